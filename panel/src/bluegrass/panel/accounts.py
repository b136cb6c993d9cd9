"""The panel's sign-ins, one store for every backend: names, argon2id hashes, session epochs,
failed sign-ins and open sessions, in three tables of the backend's own SQLite database.

    web_accounts(name, admin, hash, epoch, created)   one row per sign-in
    web_login_failures(at, name, ip)                  failed sign-ins, kept a day
    web_sessions(id, name, created, seen)             one row per signed-in browser

The cloud (DATA/bluegrass.db), the Pi (STATE/state.sqlite) and the reference backend
(ROOT/panel.db) each create these tables in their own migrations and hand a connection to
`WebAccounts`; the rules (one hasher, one minimum length, unknown names costing a hash) are
here once. `SignIns` gives a backend the sign-in half of the Accounts role on top of it.

A session is a row of web_sessions: the signed cookie carries a random token, the row its
SHA-256 (a copy of the database opens no session). Signing out deletes the row, a password
change deletes every row of that name, and a row older than its absolute lifetime or unused
for longer than the idle limit no longer counts (decision 126).
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from bluegrass.core import names
from bluegrass.core.errors import UsageError

# People choose these passwords: OWASP's first choice for argon2id (46 MiB, 1 pass, 1 lane),
# about 0.1 s; as much work as the 19 MiB, 2-pass baseline the Pi and the reference used, and
# 46 MiB at a time fits a Pi Zero 2 W's 512 MB (sign-in is rate limited). The parameters live
# in each hash, so hashes made with the earlier ones still verify.
HASHER = PasswordHasher(time_cost=1, memory_cost=47104, parallelism=1)
MIN_PASSWORD = 10
# Verified when the name is unknown, so that the answer takes as long either way. A constant
# with HASHER's parameters: hashing one afresh would cost a hash in every process.
DUMMY_HASH = (
    "$argon2id$v=19$m=47104,t=1,p=1$X7VvA1noJO5NNPDUhn51hg$"
    "MycwsALSoto38wOcuSK5gMkbL2uvLrRdXkx54Xx9tnM"
)
FAILURES_KEPT = 86400.0  # a failed sign-in older than this no longer counts anywhere

# Each backend adds these to its own database in a migration of its own (decision 126): the
# cloud's DATA/bluegrass.db, the Pi's state database, the reference's panel.db.
SESSION_TABLES = [
    """CREATE TABLE web_sessions (
        id TEXT PRIMARY KEY,            -- SHA-256 of the cookie's token, hex
        name TEXT NOT NULL REFERENCES web_accounts (name) ON DELETE CASCADE,
        created REAL NOT NULL,          -- sign-in: the absolute lifetime counts from here
        seen REAL NOT NULL              -- last use, SEEN_EVERY at most behind
    )""",
    "CREATE INDEX web_sessions_name ON web_sessions (name)",
]
# A session's last use is written at most this often (seconds): a page is several requests,
# and a write for each would be needless work on the Pi's SD card. The idle limit is hours.
SEEN_EVERY = 60.0

TABLES = [
    """CREATE TABLE web_accounts (
        name TEXT PRIMARY KEY,
        admin INTEGER NOT NULL,
        hash TEXT NOT NULL,             -- argon2id, parameters inside
        epoch TEXT NOT NULL,            -- changes with the password: other sessions end
        created REAL NOT NULL
    )""",
    "CREATE TABLE web_login_failures (at REAL NOT NULL, name TEXT NOT NULL, ip TEXT NOT NULL)",
    "CREATE INDEX web_login_failures_at ON web_login_failures (at)",
    *SESSION_TABLES,
]


@dataclass(frozen=True)
class Account:
    name: str
    admin: bool
    # Changes whenever the password changes (or the account is reset): a session that was
    # opened under another epoch is no longer valid. Any opaque string.
    session_epoch: str


@dataclass(frozen=True)
class LoginFailure:
    at: datetime
    name: str
    ip: str


def check_password(password: str) -> str:
    """Given a new password, return it. Raise UsageError when it is shorter than MIN_PASSWORD."""
    if len(password) < MIN_PASSWORD:
        raise UsageError(f"the password needs at least {MIN_PASSWORD} characters")
    return password


def hash_password(password: str) -> str:
    """Given a new password, return its argon2id hash (~0.05 s: compute it outside any write
    transaction). Raise UsageError when the password is too short."""
    return HASHER.hash(check_password(password))


class WebAccounts:
    """The two tables over one open connection; the caller decides the transaction."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def _rows(self, where: str, params: tuple[object, ...]) -> list[Account]:
        rows = self.db.execute(
            f"SELECT name, admin, epoch FROM web_accounts {where}",  # noqa: S608 - ours
            params,
        ).fetchall()
        return [Account(str(r[0]), bool(r[1]), str(r[2])) for r in rows]

    def get(self, name: str) -> Account | None:
        """Given a name, return its account, or None (invalid names included)."""
        if not names.is_valid(name):
            return None
        found = self._rows("WHERE name = ?", (name,))
        return found[0] if found else None

    def all(self) -> list[Account]:
        """Return every account, by name."""
        return self._rows("ORDER BY name", ())

    def has_admin(self) -> bool:
        """Return whether an administrator exists (the first-run setup is done)."""
        found = self.db.execute("SELECT 1 FROM web_accounts WHERE admin = 1 LIMIT 1")
        return found.fetchone() is not None

    def set_password(
        self, name: str, digest: str, admin: bool | None = None, *, admin_if_new: bool = False
    ) -> Account:
        """Given a valid name and a hash_password() digest, create the account or change its
        password, with a new session epoch either way (sessions under the old one end), and
        return it. `admin` None keeps the flag, or gives a new account `admin_if_new`. Call it
        inside a write transaction. Raise UsageError for an invalid name."""
        names.check("user", name)
        epoch = secrets.token_hex(16)
        existing = self.get(name)
        if existing is None:
            flag = admin_if_new if admin is None else admin
            self.db.execute(
                "INSERT INTO web_accounts (name, admin, hash, epoch, created) "
                "VALUES (?, ?, ?, ?, ?)",
                (name, int(flag), digest, epoch, time.time()),
            )
        else:
            flag = existing.admin if admin is None else admin
            self.db.execute(
                "UPDATE web_accounts SET hash = ?, epoch = ?, admin = ? WHERE name = ?",
                (digest, epoch, int(flag), name),
            )
            # Every open session of this name ends now, not at its next request: a password
            # changed because it leaked must lock out whoever used it (decision 126).
            self.db.execute("DELETE FROM web_sessions WHERE name = ?", (name,))
        return Account(name, flag, epoch)

    def verify(self, name: str, password: str) -> Account | None:
        """Given a name and a password, return the account if the password is its own, else
        None. An unknown or invalid name costs the same hash: the time tells nothing."""
        row = None
        if names.is_valid(name):
            row = self.db.execute(
                "SELECT hash FROM web_accounts WHERE name = ?", (name,)
            ).fetchone()
        try:
            HASHER.verify(str(row[0]) if row else DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            return None
        return self.get(name) if row else None

    def failures(self, name: str, ip: str, since: datetime) -> list[LoginFailure]:
        """Given a name and an address, return the failed sign-ins since `since` for that
        name OR from that address, oldest first."""
        rows = self.db.execute(
            "SELECT at, name, ip FROM web_login_failures "
            "WHERE at >= ? AND (name = ? OR ip = ?) ORDER BY at",
            (since.timestamp(), name, ip),
        )
        return [LoginFailure(datetime.fromtimestamp(r[0], UTC), r[1], r[2]) for r in rows]

    def record_failure(self, name: str, ip: str) -> None:
        """Given a name (as typed) and an address, remember one failed sign-in; forget those
        older than FAILURES_KEPT. Both are cut short: they come from whoever asks."""
        now = time.time()
        self.db.execute("DELETE FROM web_login_failures WHERE at < ?", (now - FAILURES_KEPT,))
        self.db.execute(
            "INSERT INTO web_login_failures (at, name, ip) VALUES (?, ?, ?)",
            (now, name[:200], ip[:100]),
        )

    def clear_failures(self, name: str) -> None:
        """Given a name that just signed in, forget its failures."""
        self.db.execute("DELETE FROM web_login_failures WHERE name = ?", (name,))

    def open_session(self, name: str, idle: float, lifetime: float) -> str:
        """Given an account's name and the limits in seconds, record a new session and
        return its token (for the signed cookie only: the table keeps its hash). Sessions
        past either limit, anyone's, are deleted on the way."""
        now = time.time()
        self.db.execute(
            "DELETE FROM web_sessions WHERE created < ? OR seen < ?",
            (now - lifetime, now - idle),
        )
        token = secrets.token_urlsafe(32)
        self.db.execute(
            "INSERT INTO web_sessions (id, name, created, seen) VALUES (?, ?, ?, ?)",
            (_session_id(token), name, now, now),
        )
        return token

    def session(self, token: str, idle: float, lifetime: float) -> Account | None:
        """Given a session token and the limits in seconds, return its account if the
        session is open (not ended, younger than `lifetime`, used within `idle`), else None.
        Marks the session used."""
        key = _session_id(token)
        row = self.db.execute(
            "SELECT name, created, seen FROM web_sessions WHERE id = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        now = time.time()
        if now - float(row[1]) > lifetime or now - float(row[2]) > idle:
            self.db.execute("DELETE FROM web_sessions WHERE id = ?", (key,))
            return None
        if now - float(row[2]) > SEEN_EVERY:
            self.db.execute("UPDATE web_sessions SET seen = ? WHERE id = ?", (now, key))
        return self.get(str(row[0]))

    def end_session(self, token: str) -> None:
        """Given a session token, end that session (signing out)."""
        self.db.execute("DELETE FROM web_sessions WHERE id = ?", (_session_id(token),))


def _session_id(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class SignIns:
    """The sign-in half of a backend's Accounts role, for a backend whose sign-ins are a
    WebAccounts store: it only says how to reach the store (`web_accounts`)."""

    def web_accounts(self) -> contextlib.AbstractContextManager[WebAccounts]:
        """A WebAccounts over a fresh connection (closed on exit), in autocommit mode."""
        raise NotImplementedError

    def needs_setup(self) -> bool:
        with self.web_accounts() as store:
            return not store.has_admin()

    def check_password(self, name: str, password: str) -> Account | None:
        with self.web_accounts() as store:
            return store.verify(name, password)

    def account(self, name: str) -> Account | None:
        with self.web_accounts() as store:
            return store.get(name)

    def login_failures(self, name: str, ip: str, since: datetime) -> list[LoginFailure]:
        with self.web_accounts() as store:
            return store.failures(name, ip, since)

    def record_login_failure(self, name: str, ip: str) -> None:
        with self.web_accounts() as store:
            store.record_failure(name, ip)

    def clear_login_failures(self, name: str) -> None:
        with self.web_accounts() as store:
            store.clear_failures(name)

    def open_session(self, name: str, idle: timedelta, lifetime: timedelta) -> str:
        with self.web_accounts() as store:
            return store.open_session(name, idle.total_seconds(), lifetime.total_seconds())

    def session_account(self, token: str, idle: timedelta, lifetime: timedelta) -> Account | None:
        with self.web_accounts() as store:
            return store.session(token, idle.total_seconds(), lifetime.total_seconds())

    def end_session(self, token: str) -> None:
        with self.web_accounts() as store:
            store.end_session(token)
