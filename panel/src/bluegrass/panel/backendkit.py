"""What every backend does the same way, once: admin checks, times, sizes, the session secret,
the first-run setup code, restore paths and folders, and the scan of recent snapshots for
suspicious ones.

Plain functions over the panel's data types (no Flask), for bluegrass.panel.reference, the
cloud's CloudBackend and the Pi's PiBackend alike.
"""

from __future__ import annotations

import contextlib
import hmac
import re
import secrets
from datetime import UTC, datetime
from pathlib import Path

from bluegrass.core import secrets_file
from bluegrass.core.errors import BluegrassError
from bluegrass.core.store import Repository, browse
from bluegrass.core.store.browse import PathError, check_path
from bluegrass.core.store.manifest import ROOT
from bluegrass.panel.accounts import Account
from bluegrass.panel.backend import BackendError, Forbidden, Problem, Severity

RECENT = 30  # snapshots looked at for suspicious ones
# The setup code: Crockford's base32 (no I, L, O or U, so nothing is read as another
# character), 4 groups of 5 characters x 5 bits = 100 bits (decision 52).
SETUP_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
SETUP_GROUPS = 4
SETUP_GROUP = 5
_READ_AS = str.maketrans({"O": "0", "I": "1", "L": "1"})
# A new folder for a restore: a plain name, no path, not hidden.
FOLDER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._ -]{0,99}")
MIN_SECRET = 32


def require_admin(account: Account) -> None:
    """Given an account, return if it is an administrator. Raise Forbidden otherwise."""
    if not account.admin:
        raise Forbidden("Only an administrator can do that.")


def utc(stamp: float | None) -> datetime | None:
    """Given seconds since the epoch (or None), return that moment in UTC (or None)."""
    return None if stamp is None else datetime.fromtimestamp(stamp, UTC)


def human_size(size: float | None) -> str:
    """Given a size in bytes, return it for a person in decimal units ("1.5 MB")."""
    if size is None:
        return ""
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{int(value)} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} bytes"


def session_secret(path: Path) -> str:
    """Given the file that holds a panel's session signing key, return the key, making it
    (0600, written whole, the first of several racing workers wins) if there is none. Raise
    BluegrassError when the file holds a key too short to sign with."""
    key = secrets_file.read_or_create(path, secrets.token_urlsafe(48))
    if len(key) < MIN_SECRET:
        raise BluegrassError(f"{path}: the web session key is too short; delete it to make one")
    return key


# -- the one-time setup code of the first-run setup (the cloud's and the Pi's) --------------


def new_setup_code() -> str:
    """Return a fresh setup code: 20 random characters of the alphabet, in groups of five."""
    chars = "".join(secrets.choice(SETUP_ALPHABET) for _ in range(SETUP_GROUPS * SETUP_GROUP))
    return "-".join(chars[i : i + SETUP_GROUP] for i in range(0, len(chars), SETUP_GROUP))


def normalize_setup_code(text: str) -> str:
    """Given what a person typed, return it as the code's characters: case, spaces and dashes
    do not count, and O, I and L are read as the digits they look like."""
    kept = "".join(c for c in text.upper() if not c.isspace() and c != "-")
    return kept.translate(_READ_AS)


def read_setup_code(path: Path) -> str | None:
    """Given the file that holds a setup code, return the code as shown (groups of five), or
    None if there is none (or it is not a code: ensure_setup_code then makes a new one)."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    plain = normalize_setup_code(text)
    if len(plain) != SETUP_GROUPS * SETUP_GROUP or any(c not in SETUP_ALPHABET for c in plain):
        return None
    return "-".join(plain[i : i + SETUP_GROUP] for i in range(0, len(plain), SETUP_GROUP))


def ensure_setup_code(path: Path) -> str:
    """Given the file for a setup code, return its code, made first if there is none
    (bluegrass.core.secrets_file: owner-only, and two processes at once agree on one code).
    Raise BluegrassError if it cannot be written."""
    found = read_setup_code(path)
    if found is not None:
        return found
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        if path.exists() or path.is_symlink():
            path.unlink()  # not a code (empty, damaged): replaced
    secrets_file.read_or_create(path, new_setup_code())
    found = read_setup_code(path)
    if found is None:
        raise BluegrassError(f"{path}: could not write the setup code")
    return found


def setup_code_matches(path: Path, given: str) -> bool:
    """Given the file of the pending setup code and what a person typed, return whether it is
    that code; compared in constant time."""
    expected = read_setup_code(path)
    typed = normalize_setup_code(given)
    if expected is None:
        # Compared all the same, so that "no code" takes as long as a wrong one.
        hmac.compare_digest(typed.encode(), new_setup_code().encode())
        return False
    return hmac.compare_digest(typed.encode(), normalize_setup_code(expected).encode())


def remove_setup_code(path: Path) -> None:
    """Given the file of a setup code, delete it if it is there: a code works once."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def restore_path(path: bytes) -> bytes:
    """Given a path from a restore request, return it checked (bluegrass.core.store.browse
    .check_path). Raise BackendError saying why it is not a path inside the segment."""
    try:
        return check_path(path)
    except PathError as exc:
        raise BackendError(f"Not a path inside the segment: {exc}.") from exc


def shown_path(path: bytes) -> str:
    """Given a checked restore path, return how a message names it."""
    return "the whole segment" if path == ROOT else path.decode("utf-8", "replace")


def restore_folder(folder: str | None) -> str:
    """Given the name asked for a new restore folder, return it. Raise BackendError unless it
    is a plain name: letters, digits, '.', '-', '_', space, not starting with '.'."""
    if not folder or not FOLDER.fullmatch(folder):
        raise BackendError(
            "Name the new folder on the drive: letters, digits, '.', '-', '_', space."
        )
    return folder


def recent_history(repo: Repository) -> list[browse.HistoryItem]:
    """Given a repository, return its RECENT newest snapshots of the whole segment."""
    return browse.history(repo, ROOT, limit=RECENT, with_changes=False)


def suspicious(recent: list[browse.HistoryItem]) -> list[Problem]:
    """Given the newest snapshots (newest first), return a warning for each suspicious one:
    one that deleted or changed an unusual share of the files."""
    return [
        Problem(
            Severity.WARNING,
            f"Suspicious snapshot on {item.date.astimezone():%Y-%m-%d %H:%M}: "
            f"{'The latest snapshot' if item is recent[0] else 'It'} deleted or changed an "
            f"unusual share of files ({item.summary}). The versions before it are kept.",
        )
        for item in recent
        if item.suspicious
    ]
