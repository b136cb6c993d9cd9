"""DATA/bluegrass.db: the connection, its transactions and its schema.

The cloud's one SQLite database holds users and their devices (bluegrass.cloud.credentials),
the sync endpoint's login failures (bluegrass.cloud.loginfailures), the job history
(bluegrass.cloud.jobhistory), the web interface's jobs (bluegrass.cloud.webjobstore) and its
sign-ins (bluegrass.panel.accounts). Each of those is a `Database` with its own methods;
bluegrass.cloud.accounts.Accounts is all of them over one connection.

This module owns the SQLite schema. The schema version is SQLite's `user_version`; each entry
of MIGRATIONS brings a database from version i to i + 1, inside one transaction
(bluegrass.core.sqlschema), so a new version only appends a migration. A database written by
a newer Bluegrass is refused.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

from bluegrass.core import diskspace, sqlschema
from bluegrass.core.errors import BluegrassError

FILENAME = "bluegrass.db"

MIGRATIONS: list[list[str]] = [
    # 1: users, devices, device keys, login failures (rate limiting), job history, meta.
    [
        "CREATE TABLE users (name TEXT PRIMARY KEY, created TEXT NOT NULL)",
        """CREATE TABLE devices (
            id TEXT PRIMARY KEY,
            user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
            name TEXT NOT NULL,
            secret_hash TEXT NOT NULL,
            created TEXT NOT NULL,
            revoked TEXT
        )""",
        "CREATE INDEX devices_by_user ON devices(user)",
        """CREATE TABLE device_keys (
            device TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
            type TEXT NOT NULL,
            blob TEXT NOT NULL,
            comment TEXT NOT NULL,
            added TEXT NOT NULL,
            PRIMARY KEY (device, blob)
        )""",
        """CREATE TABLE login_failures (
            at REAL NOT NULL,
            user TEXT NOT NULL,
            client_ip TEXT NOT NULL,
            reason TEXT NOT NULL
        )""",
        "CREATE INDEX login_failures_by_time ON login_failures(at)",
        """CREATE TABLE jobs (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            user TEXT NOT NULL,
            segment TEXT NOT NULL,
            scheduled_for TEXT,
            started TEXT NOT NULL,
            finished TEXT NOT NULL,
            outcome TEXT NOT NULL,
            detail TEXT NOT NULL
        )""",
        "CREATE INDEX jobs_by_segment ON jobs(kind, user, segment, scheduled_for)",
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "INSERT INTO meta VALUES ('credentials_revision', '0')",
    ],
    # 2: the web interface: accounts (one per user, never a device's secret), its sign-in
    # failures (kept apart from the sync endpoint's, so that guessing a web password does not
    # stop a user's laptops from syncing) and its background jobs (state shared by workers).
    [
        """CREATE TABLE web_accounts (
            user TEXT PRIMARY KEY REFERENCES users(name) ON DELETE CASCADE,
            password_hash TEXT NOT NULL,
            admin INTEGER NOT NULL DEFAULT 0,
            session_epoch TEXT NOT NULL,
            created TEXT NOT NULL,
            password_changed TEXT NOT NULL
        )""",
        """CREATE TABLE web_login_failures (
            at REAL NOT NULL,
            name TEXT NOT NULL,
            client_ip TEXT NOT NULL
        )""",
        "CREATE INDEX web_login_failures_by_time ON web_login_failures(at)",
        """CREATE TABLE web_jobs (
            id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            kind TEXT NOT NULL,
            label TEXT NOT NULL,
            user TEXT NOT NULL,
            segment TEXT NOT NULL,
            state TEXT NOT NULL,
            progress REAL,
            message TEXT NOT NULL,
            started REAL NOT NULL,
            finished REAL
        )""",
        "CREATE INDEX web_jobs_by_owner ON web_jobs(owner, started)",
        "CREATE INDEX web_jobs_by_segment ON web_jobs(user, segment, state)",
    ],
    # 3: the web sign-ins take the column names of the panel's one store
    # (bluegrass.panel.accounts), shared with the Pi and the reference backend. Rows are kept:
    # a password set before still signs in. `password_changed` was written, never read.
    [
        "ALTER TABLE web_accounts RENAME COLUMN user TO name",
        "ALTER TABLE web_accounts RENAME COLUMN password_hash TO hash",
        "ALTER TABLE web_accounts RENAME COLUMN session_epoch TO epoch",
        "ALTER TABLE web_accounts DROP COLUMN password_changed",
        "ALTER TABLE web_login_failures RENAME COLUMN client_ip TO ip",
    ],
    # 4: storage quotas (bluegrass.cloud.quota, decision 130). A user's quota in bytes, NULL
    # for none; the last measured use of each user with its time, and whether the sync
    # endpoint was last told to serve them restricted, and how (a change of that restarts it):
    # 0 not, 1 no new files, 2 read-only; `floor`, the fewest live bytes seen while restricted.
    [
        "ALTER TABLE users ADD COLUMN quota INTEGER",
        """CREATE TABLE usage (
            user TEXT PRIMARY KEY REFERENCES users(name) ON DELETE CASCADE,
            files INTEGER NOT NULL,
            history INTEGER NOT NULL,
            measured REAL NOT NULL,
            restricted INTEGER NOT NULL DEFAULT 0,
            floor INTEGER
        )""",
    ],
    # 5: the panel's sessions, kept in its sign-in store so that signing out ends them
    # (decision 126); they go with the web login (ON DELETE CASCADE).
    # Written out, not taken from bluegrass.panel.accounts.SESSION_TABLES: a migration that
    # has run must never change.
    [
        """CREATE TABLE web_sessions (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL REFERENCES web_accounts (name) ON DELETE CASCADE,
            created REAL NOT NULL,
            seen REAL NOT NULL
        )""",
        "CREATE INDEX web_sessions_name ON web_sessions (name)",
    ],
    # 6: the sync endpoint counts failures per source and per device id, never per user name
    # (decision 120); old rows, counted by name, are dropped rather than guessed at.
    [
        "DELETE FROM login_failures",
        "ALTER TABLE login_failures ADD COLUMN device TEXT NOT NULL DEFAULT ''",
        "CREATE INDEX login_failures_by_source ON login_failures(client_ip, at)",
    ],
    # 7: emergency access (bluegrass.cloud.emergency, decision 180): the trusted people each
    # owner names with their waiting period; the requests (kept after they end, for the log's
    # sake: `state` waiting, granted, refused or ended; times in the server's own epoch
    # seconds); and the log of every step, which the owner reads. An access is logged once per
    # request and session (the unique index).
    [
        """CREATE TABLE emergency_contacts (
            owner TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
            grantee TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
            wait_days INTEGER NOT NULL,
            added REAL NOT NULL,
            PRIMARY KEY (owner, grantee)
        )""",
        "CREATE INDEX emergency_contacts_by_grantee ON emergency_contacts(grantee)",
        """CREATE TABLE emergency_requests (
            id INTEGER PRIMARY KEY,
            owner TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
            grantee TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
            requested REAL NOT NULL,
            wait_days INTEGER NOT NULL,
            state TEXT NOT NULL,
            closed REAL
        )""",
        "CREATE INDEX emergency_requests_by_pair ON emergency_requests(owner, grantee, state)",
        """CREATE TABLE emergency_log (
            id INTEGER PRIMARY KEY,
            at REAL NOT NULL,
            owner TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
            grantee TEXT NOT NULL,
            event TEXT NOT NULL,
            detail TEXT NOT NULL,
            request INTEGER,
            session TEXT
        )""",
        "CREATE INDEX emergency_log_by_owner ON emergency_log(owner, at)",
        """CREATE UNIQUE INDEX emergency_log_access_once ON emergency_log(request, session)
            WHERE event = 'accessed'""",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)


class AccountsError(BluegrassError):
    pass


def now_text() -> str:
    """Return now, in UTC, as the database's text timestamps are written."""
    return datetime.now(UTC).isoformat(timespec="seconds")


class Database:
    """One connection to DATA/bluegrass.db. Use as a context manager; writes are atomic."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.exists():
            # Hashes only, but still nobody else's business.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        try:
            self.db = sqlite3.connect(path, isolation_level=None, timeout=10)
            self.db.execute("PRAGMA foreign_keys = ON")
            # Several processes use the database at once (each login runs the auth proxy).
            self.db.execute("PRAGMA journal_mode = WAL")
            self._migrate()
        except sqlite3.Error as exc:
            if diskspace.mentions_full(str(exc)) or diskspace.is_nearly_full(path):
                # SQLite says "disk I/O error" when it cannot even map its WAL index.
                doing = f"opening the accounts database {path} (SQLite: {exc})"
                raise AccountsError(diskspace.no_space(path, doing)) from exc
            raise AccountsError(f"{path}: cannot use the accounts database: {exc}") from exc

    @classmethod
    def open(cls, data_root: Path) -> Self:
        return cls(data_root / FILENAME)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All of it or none of it; IMMEDIATE so that two writers queue instead of failing."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _migrate(self) -> None:
        sqlschema.migrate(self.db, MIGRATIONS, str(self.path), AccountsError)
