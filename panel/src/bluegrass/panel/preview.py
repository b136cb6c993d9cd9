"""How a file is shown: highlighted text, an image, a PDF, sandboxed HTML/SVG, or nothing.

The decision uses the name and the first bytes; it never trusts a browser to sniff. What
the preview endpoint may send inline is a short allow-list of types; anything else goes out
as an attachment.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass

from markupsafe import Markup
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import TextLexer, get_lexer_for_filename
from pygments.util import ClassNotFound

TEXT_LIMIT = 512 * 1024  # highlighted inline at most; longer files are cut with a notice
SNIFF = 8192

IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
    ".ico": "image/x-icon",
    ".avif": "image/avif",
}
# Rendered only inside `Content-Security-Policy: sandbox` (no script, opaque origin).
SANDBOXED_TYPES = {
    ".html": "text/html",
    ".htm": "text/html",
    ".svg": "image/svg+xml",
    ".xhtml": "application/xhtml+xml",
}
PDF = "application/pdf"

FORMATTER = HtmlFormatter(cssclass="hl", wrapcode=True)


@dataclass(frozen=True)
class Kind:
    kind: str  # "text", "image", "pdf", "binary", "empty"
    sandboxed_render: bool  # HTML/SVG: a rendered view is offered, in a sandbox
    inline_type: str | None  # Content-Type the preview endpoint may use inline


def _suffix(name: str) -> str:
    dot = name.rfind(".")
    return name[dot:].lower() if dot > 0 else ""


def is_text(head: bytes) -> bool:
    if b"\0" in head[:SNIFF]:
        return False
    sample = head[:SNIFF]
    try:
        sample.decode("utf-8")
        return True
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end of the sample is still text.
        return exc.start >= len(sample) - 3


def classify(name: str, size: int, head: bytes) -> Kind:
    suffix = _suffix(name)
    if size == 0:
        return Kind("empty", False, "text/plain; charset=utf-8")
    if suffix in IMAGE_TYPES:
        return Kind("image", False, IMAGE_TYPES[suffix])
    if suffix == ".pdf" and head.startswith(b"%PDF"):
        return Kind("pdf", False, PDF)
    if suffix in SANDBOXED_TYPES:
        return Kind("text", True, SANDBOXED_TYPES[suffix])
    if is_text(head):
        return Kind("text", False, "text/plain; charset=utf-8")
    return Kind("binary", False, None)


def download_type(name: str) -> str:
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed or "application/octet-stream"


def highlighted(name: str, data: bytes) -> Markup:
    """Pygments HTML for the text (Pygments escapes it); plain text when no lexer fits."""
    text = data.decode("utf-8", "replace")
    try:
        lexer = get_lexer_for_filename(name, stripnl=False, ensurenl=False)
    except ClassNotFound:
        lexer = TextLexer(stripnl=False, ensurenl=False)
    return Markup(highlight(text, lexer, FORMATTER))  # noqa: S704 - Pygments output is escaped


def stylesheet() -> str:
    return FORMATTER.get_style_defs(".hl")
