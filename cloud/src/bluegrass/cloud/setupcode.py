"""The one-time setup code that the web interface's first-run setup asks for.

Until an administrator exists, the web interface offers only its first-run setup page. A
cloud server is on the internet, so that page also asks for a setup code that only the
person running the server can know: 20 characters of Crockford's base32 (100 random bits),
shown in groups of five, kept in DATA/run/web-setup-code (0600). `run` makes it at start
while setup is pending and logs it; `web setup-code` prints it (making it if needed). A
successful setup deletes it; once an administrator exists (also one made with `user
password NAME --admin`) no code is accepted, and `run` or `web setup-code` deletes a stale file.

The code itself (making, reading, comparing) is bluegrass.panel.backendkit's, shared with the
Pi's setup; this module says where the cloud keeps it and when setup is pending.
"""

from __future__ import annotations

from pathlib import Path

from bluegrass.cloud.accounts import Accounts
from bluegrass.panel import backendkit
from bluegrass.panel.backendkit import new_setup_code as new_code
from bluegrass.panel.backendkit import normalize_setup_code as normalize

__all__ = [
    "ensure_setup_code",
    "new_code",
    "normalize",
    "read_setup_code",
    "remove_setup_code",
    "setup_code_matches",
    "setup_code_path",
    "setup_pending",
]

SETUP_CODE_FILE = Path("run") / "web-setup-code"


def setup_code_path(data_root: Path) -> Path:
    """Given a data root, return where its setup code is kept."""
    return data_root / SETUP_CODE_FILE


def setup_pending(data_root: Path) -> bool:
    """Given a data root, return whether the web interface still has no administrator."""
    with Accounts.open(data_root) as accounts:
        return not accounts.has_web_admin()


def read_setup_code(data_root: Path) -> str | None:
    """Given a data root, return its current code as shown (groups of five), or None."""
    return backendkit.read_setup_code(setup_code_path(data_root))


def ensure_setup_code(data_root: Path) -> str:
    """Given a data root, return its current code, made first if there is none. Raise
    BluegrassError if it cannot be written."""
    return backendkit.ensure_setup_code(setup_code_path(data_root))


def setup_code_matches(data_root: Path, given: str) -> bool:
    """Given a data root and what a person typed, return whether it is the current code;
    compared in constant time."""
    return backendkit.setup_code_matches(setup_code_path(data_root), given)


def remove_setup_code(data_root: Path) -> None:
    """Given a data root, delete its setup code if there is one: it works once."""
    backendkit.remove_setup_code(setup_code_path(data_root))
