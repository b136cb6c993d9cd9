"""The panel's sign-ins on the appliance: the panel's one store (bluegrass.panel.accounts) in
the state database, with the appliance's rule that every account is an administrator.

Every account on the Pi administers the whole appliance (it sees every segment on the drive).
The first one is made by the panel's first-run setup or by `bluegrass-appliance password
NAME`, which is also how a forgotten password is reset by whoever can log in to the Pi itself.
"""

from __future__ import annotations

import sqlite3

from bluegrass.core import names
from bluegrass.core.errors import UsageError
from bluegrass.panel.accounts import WebAccounts, check_password, hash_password

__all__ = ["check_name", "check_password", "hash_password", "set_password"]


def check_name(name: str) -> str:
    """Given a name, return it. Raise UsageError when it is not a valid account name."""
    if not names.is_valid(name):
        raise UsageError(f"not a valid name: {name!r} (a-z, 0-9 and '-', up to 63 characters)")
    return name


def set_password(db: sqlite3.Connection, name: str, digest: str, admin: bool | None = None) -> str:
    """Given a connection inside State.transaction(), create NAME (an administrator unless
    `admin` says otherwise) or change its password; return the new session epoch. Raise
    UsageError for an invalid name."""
    found = WebAccounts(db).set_password(check_name(name), digest, admin, admin_if_new=True)
    return found.session_epoch
