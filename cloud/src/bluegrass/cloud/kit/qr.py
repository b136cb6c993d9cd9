"""A secret as a QR code's modules, for kit.pdf to draw as vector squares (crisp at any
printer's resolution, no image library)."""

from __future__ import annotations

import segno

QUIET = 4  # modules of white around the code, as the QR standard asks


def modules(value: str) -> list[list[bool]]:
    """The dark (True) and light modules of a QR code holding exactly `value` (UTF-8 bytes,
    error correction M: a smudge or a fold on paper still reads), without the quiet zone."""
    code = segno.make_qr(value, error="m", boost_error=False, encoding="utf-8")
    return [[bool(cell) for cell in row] for row in code.matrix]
