"""The one-time setup code that the web interface's first-run setup asks for.

Until an administrator exists, the web interface offers only its first-run setup page. A
cloud server is on the internet, so that page also asks for a setup code that only the
person running the server can know: 20 characters of Crockford's base32 (100 random bits),
shown in groups of five, kept in DATA/run/web-setup-code (0600). `run` makes it at start
while setup is pending and logs it; `web setup-code` prints it (making it if needed). A
successful setup deletes it; once an administrator exists (also one made with `user
password NAME --admin`) no code is accepted, and `run` or `web setup-code` deletes a stale file.
"""

from __future__ import annotations

import contextlib
import hmac
import secrets
from pathlib import Path

from bluegrass.cloud.accounts import Accounts
from bluegrass.core import secrets_file
from bluegrass.core.errors import BluegrassError

SETUP_CODE_FILE = Path("run") / "web-setup-code"
# Crockford's base32: no I, L, O or U, so nothing is read as another character.
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
GROUPS = 4
GROUP = 5  # 4 x 5 characters x 5 bits = 100 bits
_READ_AS = str.maketrans({"O": "0", "I": "1", "L": "1"})


def new_code() -> str:
    """Return a fresh code: 20 random characters of the alphabet, in groups of five."""
    chars = "".join(secrets.choice(ALPHABET) for _ in range(GROUPS * GROUP))
    return "-".join(chars[i : i + GROUP] for i in range(0, len(chars), GROUP))


def normalize(text: str) -> str:
    """Given what a person typed, return it as the code's characters: case, spaces and dashes
    do not count, and O, I and L are read as the digits they look like."""
    kept = "".join(c for c in text.upper() if not c.isspace() and c != "-")
    return kept.translate(_READ_AS)


def _well_formed(code: str) -> bool:
    return len(code) == GROUPS * GROUP and all(c in ALPHABET for c in code)


def setup_code_path(data_root: Path) -> Path:
    """Given a data root, return where its setup code is kept."""
    return data_root / SETUP_CODE_FILE


def setup_pending(data_root: Path) -> bool:
    """Given a data root, return whether the web interface still has no administrator."""
    with Accounts.open(data_root) as accounts:
        return not accounts.has_web_admin()


def read_setup_code(data_root: Path) -> str | None:
    """Given a data root, return its current code as shown (groups of five), or None if there
    is none (or it is not a code: then ensure_setup_code makes a new one)."""
    try:
        text = setup_code_path(data_root).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    plain = normalize(text)
    if not _well_formed(plain):
        return None
    return "-".join(plain[i : i + GROUP] for i in range(0, len(plain), GROUP))


def ensure_setup_code(data_root: Path) -> str:
    """Given a data root, return its current code, made first if there is none
    (bluegrass.core.secrets_file: owner-only, and two processes at once agree on one code).
    Raise BluegrassError if it cannot be written."""
    found = read_setup_code(data_root)
    if found is not None:
        return found
    path = setup_code_path(data_root)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        if path.exists() or path.is_symlink():
            path.unlink()  # not a code (empty, damaged): replaced
    secrets_file.read_or_create(path, new_code())
    found = read_setup_code(data_root)
    if found is None:
        raise BluegrassError(f"{path}: could not write the web setup code")
    return found


def setup_code_matches(data_root: Path, given: str) -> bool:
    """Given a data root and what a person typed, return whether it is the current code;
    compared in constant time."""
    expected = read_setup_code(data_root)
    typed = normalize(given)
    if expected is None:
        # Compared all the same, so that "no code" takes as long as a wrong one.
        hmac.compare_digest(typed.encode(), new_code().encode())
        return False
    return hmac.compare_digest(typed.encode(), normalize(expected).encode())


def remove_setup_code(data_root: Path) -> None:
    """Given a data root, delete its setup code if there is one: it works once."""
    with contextlib.suppress(FileNotFoundError):
        setup_code_path(data_root).unlink()
