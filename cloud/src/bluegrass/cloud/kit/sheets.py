"""The split kit's sheets: one printed page per trusted person, with their share as words.

Each sheet says in plain words what it is, that it opens nothing alone, and how K of them are
combined, with Bluegrass (`bluegrass-cloud kit --combine`) and without it (the reference SLIP-39
tool from PyPI and python3). Written with fpdf2's core fonts (no font file to ship), one PDF per
sheet, owner-only, through a temporary file and a rename so that no half sheet is left.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bluegrass.cloud.kit.split import BASE64URL, Sheet, share_lines
from fpdf import FPDF

# The reference implementation, pinned to the version the sheets were tested with.
SHAMIR_PACKAGE = "shamir-mnemonic[cli]==0.3.0"

# What turns `shamir recover`'s "Your master secret is: HEX" back into the secret's text.
TO_TEXT = {
    BASE64URL: (
        "python3 -c 'import base64, sys; h = bytes.fromhex(sys.argv[1])\n"
        'print(base64.urlsafe_b64encode(h).decode().rstrip("="))\' HEX'
    ),
    "text": (
        'python3 -c \'import sys; h = b"".join(bytes.fromhex(x) for x in sys.argv[1:])\n'
        'print(h.rstrip(b"\\0").decode())\' HEX [HEX2 ...]'
    ),
}


@dataclass(frozen=True)
class SheetContext:
    """What the sheets are about, in the words of the main kit."""

    title: str  # e.g. "alice's files on cloud.example.org", or "the server cloud.example.org"
    made: str  # the date the kit was made, as printed on the main kit


def sheet_path(out: Path, sheet: Sheet) -> Path:
    """FILE.pdf → FILE-share-1-of-3.pdf, beside the main kit."""
    stem = out.name[: -len(".pdf")] if out.name.lower().endswith(".pdf") else out.name
    return out.with_name(f"{stem}-share-{sheet.index}-of-{sheet.scheme.count}.pdf")


def sheet_text(sheet: Sheet, context: SheetContext) -> list[tuple[str, str]]:
    """The sheet as (style, line) pairs: style is "h1", "h2", "p" or "mono"."""
    k, n = sheet.scheme.threshold, sheet.scheme.count
    kinds = sorted({share.kind for share in sheet.shares})
    lines: list[tuple[str, str]] = [
        ("h1", f"Bluegrass recovery kit: share {sheet.index} of {n}"),
        ("p", f"For {context.title}. Made {context.made}."),
        (
            "p",
            f"This sheet alone opens nothing. Any {k} of the {n} sheets together give back the "
            "secrets that the main recovery kit leaves out; the main kit says how to use them "
            "to get the files back. Keep this sheet private and safe, like a house key.",
        ),
        ("h2", f"Your share (sheet {sheet.index} of {n}; {k} sheets are needed)"),
    ]
    for share in sheet.shares:
        header, *rows = share_lines(share)
        lines.append(("mono", header))
        lines.extend(("mono", "  " + row) for row in rows)
    lines += [
        ("h2", "Combining the sheets with Bluegrass"),
        (
            "p",
            f"On a computer with Bluegrass, put {k} sheets' words in a text file, each block "
            "as printed above (the line with the name in [brackets], then its words), and run:",
        ),
        ("mono", "bluegrass-cloud kit --combine FILE"),
        ("p", "It prints each secret by its name, as the main kit uses it."),
        ("h2", "Combining the sheets without Bluegrass"),
        (
            "p",
            "On any Linux or macOS computer with python3, install the reference SLIP-39 tool "
            "(from the Python Package Index):",
        ),
        ("mono", "python3 -m venv ~/slip39"),
        ("mono", f"~/slip39/bin/pip install '{SHAMIR_PACKAGE}'"),
        (
            "p",
            "Then, for each secret named above (and each part of one, if it has parts), run the "
            f"tool and type that secret's words from {k} different sheets, all the words of one "
            "sheet on one line, then Enter:",
        ),
        ("mono", "~/slip39/bin/shamir recover"),
        (
            "p",
            'It ends with "Your master secret is: " and a long hexadecimal number (HEX). Turn '
            "HEX into the secret's text with the command for its kind, the word in [brackets] "
            "after its name:",
        ),
    ]
    for kind in kinds:
        lines.append(("p", f"[{kind} ...]:"))
        lines.extend(("mono", row) for row in TO_TEXT[kind].splitlines())
    if "text" in kinds:
        lines.append(
            ("p", "A secret in parts: give the HEX of part 1, then part 2, ... to one command.")
        )
    lines.append(
        (
            "p",
            "The text printed is the secret: use it where the main kit names it. Fewer than "
            f"{k} sheets give nothing: the tool asks for more words.",
        )
    )
    return lines


def _latin1(text: str) -> str:
    # The core fonts are Latin-1; a name outside it is shown with "?" rather than failing.
    return text.encode("latin-1", "replace").decode("latin-1")


def render(sheet: Sheet, context: SheetContext) -> bytes:
    pdf = FPDF(format="A4")
    pdf.set_margins(18, 14, 18)
    pdf.set_auto_page_break(True, margin=16)
    pdf.add_page()
    width = pdf.epw
    for style, line in sheet_text(sheet, context):
        text = _latin1(line)
        if style == "h1":
            pdf.set_font("Helvetica", "B", 16)
            pdf.multi_cell(width, 8, text, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2)
        elif style == "h2":
            pdf.ln(3)
            pdf.set_font("Helvetica", "B", 12)
            pdf.multi_cell(width, 6, text, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(1)
        elif style == "mono":
            pdf.set_font("Courier", "", 9)
            pdf.multi_cell(width, 4.3, text, new_x="LMARGIN", new_y="NEXT")
        else:
            pdf.set_font("Helvetica", "", 10)
            pdf.multi_cell(width, 4.9, text, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(1)
    return bytes(pdf.output())


def write_all(sheets: list[Sheet], context: SheetContext, out: Path) -> list[Path]:
    """Render every sheet first, then write each owner-only beside `out`; nothing is written
    when rendering fails, and no path holds a half-written sheet."""
    rendered = [(sheet_path(out, sheet), render(sheet, context)) for sheet in sheets]
    written: list[Path] = []
    for path, data in rendered:
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
        written.append(path)
    return written
