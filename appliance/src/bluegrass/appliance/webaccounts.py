"""The panel's sign-ins on the appliance: names and argon2id password hashes in the state.

Every account on the Pi is an administrator of the whole appliance (it sees every segment on
the drive). The first one is made by the panel's first-run setup or by
`bluegrass-appliance password NAME`, which is also how a forgotten password is reset by
whoever can log in to the Pi itself.
"""

from __future__ import annotations

import secrets
import sqlite3

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from bluegrass.appliance.state import State
from bluegrass.core import names
from bluegrass.core.errors import UsageError

# OWASP's argon2id baseline (19 MiB, 2 passes): affordable on a Pi Zero 2 W with 512 MB, and
# sign-in is rate limited. The parameters live in each hash, so they can change later.
HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
MIN_PASSWORD = 10
# A hash to verify against when the name is unknown: the answer costs the same time.
_DUMMY = HASHER.hash(secrets.token_urlsafe(16))


def check_name(name: str) -> str:
    if not names.is_valid(name):
        raise UsageError(f"not a valid name: {name!r} (a-z, 0-9 and '-', up to 63 characters)")
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise UsageError(f"the password needs at least {MIN_PASSWORD} characters")
    return password


def hash_password(password: str) -> str:
    return HASHER.hash(check_password(password))


def new_epoch() -> str:
    return secrets.token_hex(8)


def set_password(db: sqlite3.Connection, name: str, digest: str, admin: bool | None = None) -> str:
    """Create NAME or change its password, inside State.transaction(); returns the new epoch."""
    epoch = new_epoch()
    State.set_web_password(db, check_name(name), digest, epoch, admin)
    return epoch


def verify(state: State, name: str, password: str) -> dict[str, object] | None:
    """The account if the password is right; the same cost whether or not NAME exists."""
    found = state.web_account(name) if names.is_valid(name) else None
    try:
        HASHER.verify(str(found["hash"]) if found else _DUMMY, password)
    except (VerificationError, InvalidHashError):
        return None
    return found
