"""The split kit's sheets: one printed page per trusted person, with their share as words.

Each sheet says in plain words what it is, that it opens nothing alone, and how K of them are
combined, with Bluegrass (`bluegrass-cloud kit --combine`) and without it (the reference SLIP-39
tool from PyPI and python3). Written with fpdf2's core fonts (no font file to ship), one PDF per
sheet, owner-only, through a temporary file and a rename so that no half sheet is left.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from bluegrass.cloud import kit
from bluegrass.cloud.kit import content, pdf
from bluegrass.cloud.kit.content import Kit
from bluegrass.cloud.kit.split import BASE64URL, Scheme, Sheet, SplitError, share_lines, split
from bluegrass.core.errors import UsageError
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
    """What the sheets belong to, in the main kit's own words."""

    kit_title: str  # e.g. "Bluegrass recovery kit for alice"
    about: str  # e.g. "Made 2026-12-07 for the account 'alice' on https://cloud.example.org."


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
        ("p", f"Part of the {context.kit_title}. {context.about}"),
        (
            "p",
            f"This sheet alone opens nothing. Any {k} of the {n} sheets together give back the "
            "secrets that the main recovery kit leaves out (their names are the ones below); "
            "the main kit says how to use them to get the files back. Keep this sheet private "
            "and safe, like a house key.",
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
        (
            "p",
            "It prints each secret as a line NAME='...', as the main kit's secrets lines are "
            "typed.",
        ),
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
            "The text printed is the secret: where the main kit's secrets lines leave it out, "
            "type its name, =, and the text in single quotes (for example PASSWORD='...'). "
            f"Fewer than {k} sheets give nothing: the tool asks for more words.",
        )
    )
    return lines


def _latin1(text: str) -> str:
    # The core fonts are Latin-1; a name outside it is shown with "?" rather than failing.
    return text.encode("latin-1", "replace").decode("latin-1")


def render(sheet: Sheet, context: SheetContext) -> bytes:
    doc = FPDF(format="A4")
    doc.set_margins(18, 14, 18)
    doc.set_auto_page_break(True, margin=16)
    doc.add_page()
    width = doc.epw
    for style, line in sheet_text(sheet, context):
        text = _latin1(line)
        if style == "h1":
            doc.set_font("Helvetica", "B", 16)
            doc.multi_cell(width, 8, text, align="L", new_x="LMARGIN", new_y="NEXT")
            doc.ln(2)
        elif style == "h2":
            doc.ln(3)
            doc.set_font("Helvetica", "B", 12)
            doc.multi_cell(width, 6, text, align="L", new_x="LMARGIN", new_y="NEXT")
            doc.ln(1)
        elif style == "mono":
            doc.set_font("Courier", "", 9)
            doc.multi_cell(width, 4.3, text, align="L", new_x="LMARGIN", new_y="NEXT")
        else:
            doc.set_font("Helvetica", "", 10)
            doc.multi_cell(width, 4.9, text, align="L", new_x="LMARGIN", new_y="NEXT")
            doc.ln(1)
    return bytes(doc.output())


def write_all(sheets: list[Sheet], context: SheetContext, out: Path) -> list[Path]:
    """Render every sheet first, then write each owner-only beside `out`, each through a
    temporary file and a rename; if one cannot be written, the ones written are removed."""
    rendered = [(sheet_path(out, sheet), render(sheet, context)) for sheet in sheets]
    written: list[Path] = []
    try:
        for path, data in rendered:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as handle:  # mkstemp makes it 0600
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                Path(tmp).replace(path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            written.append(path)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return written


_SCAN = re.compile(r" \(or scan the codes[^)]*\)")


@dataclass(frozen=True)
class SplitKit:
    """A main kit without its secrets, and the sheets that carry them."""

    kit: Kit  # its split secrets' values blanked, their QR codes gone
    sheets: tuple[Sheet, ...]
    context: SheetContext


def withhold(kit: Kit, scheme: Scheme) -> tuple[Kit, dict[str, str]]:
    """The kit without the secrets that open anything (those it prints as QR codes), and
    those secrets by name. Where they stood, the kit says they are on K of N sheets."""
    shared = {s.name: s.value for s in kit.secrets if s.qr and s.value}
    if not shared:
        raise SplitError("this kit prints no secret to split (is the replica unencrypted?)")
    kept = tuple(replace(s, value="", qr=False) if s.name in shared else s for s in kit.secrets)
    names = ", ".join(shared)
    split_words = (
        f"{names} are not printed here: they are split between {scheme.count} sheets given to "
        f"trusted people, and any {scheme.threshold} of them give them back (each sheet says "
        "how); type each after its =. "
    )
    how, rest = "", kit.secrets_words
    if rest.startswith(content.HOW_TO_TYPE):
        how, rest = content.HOW_TO_TYPE, rest[len(content.HOW_TO_TYPE) :]
        if not any(s.qr for s in kept):  # no code is left to scan
            how = _SCAN.sub("", how)
    return replace(kit, secrets=kept, secrets_words=how + split_words + rest), shared


def split_kit(kit: Kit, scheme: Scheme) -> SplitKit:
    main, shared = withhold(kit, scheme)
    return SplitKit(main, tuple(split(shared, scheme)), SheetContext(kit.title, kit.subtitle))


def save(made: SplitKit, out: Path, *, force: bool = False) -> list[Path]:
    """Write the sheets beside `out`, then the main kit at `out` (kit.save); nothing is
    written when any of the files exists (unless `force`) or the folder is missing."""
    paths = [sheet_path(out, sheet) for sheet in made.sheets]
    if not out.parent.is_dir():
        raise UsageError(f"--out {out}: the folder {out.parent} does not exist")
    if not force:
        for path in (out, *paths):
            if path.exists():
                raise UsageError(f"{path}: already exists; choose another name or add --force")
    main = pdf.render(made.kit)
    written = write_all(list(made.sheets), made.context, out)
    try:
        kit.save(main, out, force=force)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return [out, *written]
