"""A Kit (kit.content) drawn as an A4 PDF with fpdf2: words in Helvetica, what to type in
Courier, each command's first line after "$ " and its further lines after "> ", as a shell
shows them, so a reader (and the test that runs the kit) can tell what to type.

Only the PDF core fonts are used (nothing to embed or find on the server), so every text must
be Latin-1; a command line too long for the page is an error here, not a wrapped line that
would no longer run as printed.
"""

from __future__ import annotations

from bluegrass.cloud.kit import qr
from bluegrass.cloud.kit.content import Kit, Secret
from bluegrass.core.recoverysteps import Step
from fpdf import FPDF
from fpdf.enums import XPos, YPos

MARGIN = 13.0
BODY = 8.8
CODE = 7.9
LINE = 3.85  # mm per line of body text
CODE_LINE = 3.4
SECRET = 9.6
MODULE = 0.62  # mm per QR module: about 25 mm a code, read by any phone at arm's length
GRAY = (238, 238, 238)
PROMPT, MORE = "$ ", "> "


class _Pdf(FPDF):
    def __init__(self, fingerprint: str) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.fingerprint = fingerprint
        self.set_margins(MARGIN, 11, MARGIN)
        self.set_auto_page_break(True, margin=13)

    def footer(self) -> None:
        self.set_y(-10)
        self.set_font("Helvetica", size=7)
        self.set_text_color(90)
        self.cell(
            0,
            4,
            f"Secrets fingerprint {self.fingerprint}   -   page {self.page_no()} of {{nb}}",
            align="C",
        )
        self.set_text_color(0)


def _words(pdf: _Pdf, text: str, *, size: float = BODY, style: str = "") -> None:
    pdf.set_font("Helvetica", style=style, size=size)
    pdf.multi_cell(0, LINE, text, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _words_height(pdf: _Pdf, text: str) -> float:
    pdf.set_font("Helvetica", size=BODY)
    return LINE * len(pdf.multi_cell(0, LINE, text, dry_run=True, output="LINES"))


def _heading(pdf: _Pdf, text: str) -> None:
    _keep(pdf, 14)
    pdf.ln(1.6)
    pdf.set_font("Helvetica", style="B", size=10.5)
    pdf.cell(0, 5.2, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _keep(pdf: _Pdf, height: float) -> None:
    """Start a new page unless `height` mm still fit on this one."""
    if pdf.get_y() + height > pdf.page_break_trigger:
        pdf.add_page()


def _code_lines(commands: tuple[str, ...]) -> list[str]:
    lines = []
    for command in commands:
        first, *more = command.split("\n")
        lines.append(PROMPT + first)
        lines.extend(MORE + line for line in more)
    return lines


def _code(pdf: _Pdf, lines: list[str], *, size: float = CODE) -> None:
    pdf.set_font("Courier", size=size)
    width = pdf.epw
    for line in lines:
        if pdf.get_string_width(line) + 2 > width:
            raise ValueError(f"a kit command line is too long for the page: {line!r}")
    height = CODE_LINE * size / CODE
    _keep(pdf, height * len(lines) + 1.5)
    pdf.set_fill_color(*GRAY)
    pdf.ln(0.6)
    for line in lines:
        pdf.cell(width, height, " " + line, fill=True, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(1.0)


def _step(pdf: _Pdf, number: str, step: Step) -> None:
    # A step's words and its commands on one page: a reader must not miss the commands.
    code = CODE_LINE * sum(c.count("\n") + 1 for c in step.commands)
    _keep(pdf, LINE + 0.4 + _words_height(pdf, step.words) + code + 2.5)
    pdf.set_font("Helvetica", style="B", size=BODY)
    pdf.cell(0, LINE + 0.4, f"{number}. {step.title}", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    _words(pdf, step.words)
    if step.commands:
        _code(pdf, _code_lines(step.commands))


def _qr(pdf: _Pdf, x: float, y: float, secret: Secret, box: float) -> None:
    """Draw the code of `secret.value` centred in a `box` mm square at (x, y), its name
    under it."""
    rows = qr.modules(secret.value)
    offset = (box - (len(rows) + 2 * qr.QUIET) * MODULE) / 2
    pdf.set_fill_color(0)
    for r, row in enumerate(rows):
        c = 0
        while c < len(row):  # one rectangle per run of dark modules: a small, fast PDF
            if not row[c]:
                c += 1
                continue
            start = c
            while c < len(row) and row[c]:
                c += 1
            pdf.rect(
                x + offset + (qr.QUIET + start) * MODULE,
                y + offset + (qr.QUIET + r) * MODULE,
                (c - start) * MODULE,
                MODULE,
                style="F",
            )
    pdf.set_xy(x, y + box - 1)
    pdf.set_font("Helvetica", style="B", size=7.5)
    pdf.cell(box, 3.5, secret.name, align="C")


def _secrets(pdf: _Pdf, kit: Kit) -> None:
    _heading(pdf, "The secrets")
    _words(pdf, kit.secrets_words)
    # Larger than the commands: these are typed by hand, character by character.
    _code(pdf, [PROMPT + s.line for s in kit.secrets], size=SECRET)
    coded = [s for s in kit.secrets if s.qr]
    if not coded:
        return
    side = max(len(qr.modules(s.value)) + 2 * qr.QUIET for s in coded) * MODULE
    _keep(pdf, side + 5)
    x, y = pdf.l_margin, pdf.get_y()
    for secret in coded:
        if x + side > pdf.w - pdf.r_margin:
            x, y = pdf.l_margin, y + side + 5
        _qr(pdf, x, y, secret, side)
        x += side + 4
    pdf.set_xy(pdf.l_margin, y + side + 4)


def render(kit: Kit) -> bytes:
    """The kit as PDF bytes."""
    pdf = _Pdf(kit.fingerprint)
    pdf.set_title(kit.title)
    pdf.set_creator("Bluegrass")
    pdf.add_page()
    pdf.set_font("Helvetica", style="B", size=15)
    pdf.cell(0, 7, kit.title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(70)
    _words(pdf, kit.subtitle, size=8)
    pdf.set_text_color(0)
    pdf.ln(1)
    _words(pdf, kit.intro)
    _heading(pdf, "Where the copies are")
    for place in kit.places:
        _words(pdf, "- " + place)
    _heading(pdf, "What keeps them alive")
    _words(pdf, kit.keep_alive)
    _secrets(pdf, kit)
    for section in kit.sections:
        _heading(pdf, f"{section.letter}. {section.title}")
        if section.words:
            _words(pdf, section.words)
        for n, step in enumerate(section.steps, 1):
            _step(pdf, f"{section.letter}{n}", step)
    return bytes(pdf.output())
