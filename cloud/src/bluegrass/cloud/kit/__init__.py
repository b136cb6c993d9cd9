"""The printed recovery kit: `bluegrass-cloud kit` and the web page's PDF (docs/replica.md
"The recovery kit").

The stable API for callers (the command, the web page):
    user_kit_pdf(data_root, user) -> bytes       a user's kit
    server_kit_pdf(data_root) -> bytes           the administrator's kit
    secrets_fingerprint(data_root, user) -> str  changes exactly when that user's kit would
    save(pdf, out, force=False)                  written whole, owner-only (0600)
Each raises a BluegrassError (UsageError for an unknown user or no [replica]) with one line
that says what was wrong.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bluegrass.cloud.kit import content
from bluegrass.cloud.kit.content import secrets_fingerprint
from bluegrass.core.errors import UsageError

__all__ = ["save", "secrets_fingerprint", "server_kit_pdf", "user_kit_pdf"]


def user_kit_pdf(data_root: Path, user: str) -> bytes:
    from bluegrass.cloud.kit import pdf  # fpdf2 costs 0.3 s to import: only when a kit is made

    return pdf.render(content.user_kit(data_root, user))


def server_kit_pdf(data_root: Path) -> bytes:
    from bluegrass.cloud.kit import pdf

    return pdf.render(content.server_kit(data_root))


def save(data: bytes, out: Path, *, force: bool = False) -> None:
    """Write `data` to `out` through a temporary file in the same folder, renamed into place:
    never a half-written kit, never readable by others. An existing `out` is refused unless
    `force` (a kit replaced by mistake may be the only copy of an older secret's page)."""
    folder = out.parent
    if not folder.is_dir():
        raise UsageError(f"--out {out}: the folder {folder} does not exist")
    if out.is_dir():
        raise UsageError(f"--out {out}: is a folder; expected a file name such as kit.pdf")
    if out.exists() and not force:
        raise UsageError(f"--out {out}: already exists; choose another name or add --force")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write in {folder}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as handle:  # mkstemp makes it 0600
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).replace(out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
