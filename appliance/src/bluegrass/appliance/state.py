"""The appliance's state in SQLite: jobs, per-segment results, alerts, the daemon's view, and
the panel's sign-ins and requests.

The daemon writes; `status` and the panel read (and the panel asks the daemon for jobs through
the `requests` table), from other processes at any time (WAL mode). Times are seconds since
the epoch (UTC); they are shown in local time.

The schema version is SQLite's `user_version`; each entry of MIGRATIONS brings a database from
version i to i + 1 inside one transaction, so a new version only appends a migration. Version
1 is the first schema (written with IF NOT EXISTS, as databases made before versioning already
have its tables at version 0). A database written by a newer Bluegrass is refused.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bluegrass.core import sqlschema
from bluegrass.core.errors import BluegrassError
from bluegrass.panel.accounts import WebAccounts

MIGRATIONS: list[list[str]] = [
    # 1: the daemon's view, jobs, per-segment results, alerts.
    [
        "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE IF NOT EXISTS jobs (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,             -- mirror | files
            origin TEXT NOT NULL,           -- daemon | command | panel
            started REAL NOT NULL,
            finished REAL,
            outcome TEXT,                   -- NULL while running; see jobs.Outcome
            message TEXT,
            details TEXT                    -- JSON: per-segment results
        )""",
        "CREATE INDEX IF NOT EXISTS jobs_kind ON jobs (kind, started)",
        """CREATE TABLE IF NOT EXISTS segments (
            user TEXT NOT NULL,
            segment TEXT NOT NULL,
            kind TEXT NOT NULL,             -- mirror | files
            at REAL NOT NULL,
            ok INTEGER NOT NULL,
            head TEXT,
            message TEXT,
            PRIMARY KEY (user, segment, kind)
        )""",
        """CREATE TABLE IF NOT EXISTS alerts (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,             -- rewrite | bad-objects | drive-full | ...
            subject TEXT NOT NULL,          -- user/segment, or the drive
            message TEXT NOT NULL,
            first_seen REAL NOT NULL,
            last_seen REAL NOT NULL,
            count INTEGER NOT NULL DEFAULT 1,
            acknowledged REAL
        )""",
    ],
    # 2: the panel: web sign-ins (argon2id), failed sign-ins (rate limiting), requests to the
    # daemon (jobs started from the panel, eject), a job's progress, a segment's last success.
    [
        """CREATE TABLE web_accounts (
            name TEXT PRIMARY KEY,
            admin INTEGER NOT NULL,
            hash TEXT NOT NULL,             -- argon2id, parameters inside
            epoch TEXT NOT NULL,            -- changes with the password: other sessions end
            created REAL NOT NULL
        )""",
        """CREATE TABLE web_login_failures (
            at REAL NOT NULL, name TEXT NOT NULL, ip TEXT NOT NULL
        )""",
        "CREATE INDEX web_login_failures_at ON web_login_failures (at)",
        """CREATE TABLE requests (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,             -- mirror | files | eject
            requested_by TEXT NOT NULL,
            requested REAL NOT NULL,
            job INTEGER,                    -- jobs.id once the daemon started it
            finished REAL,
            ok INTEGER,
            message TEXT
        )""",
        "CREATE INDEX requests_open ON requests (finished, id)",
        "ALTER TABLE jobs ADD COLUMN progress REAL",
        "ALTER TABLE jobs ADD COLUMN progress_message TEXT",
        "ALTER TABLE segments ADD COLUMN last_ok REAL",
        "UPDATE segments SET last_ok = at WHERE ok = 1",
    ],
    # 3: the panel's sessions, kept in its sign-in store so that signing out ends them
    # (decision 126).
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
]
SCHEMA_VERSION = len(MIGRATIONS)


class StateError(BluegrassError):
    pass


@dataclass
class Alert:
    id: int
    kind: str
    subject: str
    message: str
    first_seen: float
    last_seen: float
    count: int
    acknowledged: float | None

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "kind": self.kind,
            "subject": self.subject,
            "message": self.message,
            "first_seen": iso(self.first_seen),
            "last_seen": iso(self.last_seen),
            "count": self.count,
            "acknowledged": iso(self.acknowledged) if self.acknowledged else None,
        }


def iso(when: float | None) -> str | None:
    if when is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(when))


class State:
    def __init__(self, path: Path) -> None:
        self.path = path
        with self.connect() as db:
            self._migrate(db)

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        sqlschema.migrate(db, MIGRATIONS, "the state database", StateError)

    @contextlib.contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        # A connection per use: the daemon's threads and other processes each get their own,
        # and SQLite's own locking (with a generous busy timeout) orders the writers.
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.row_factory = sqlite3.Row
            yield db
        finally:
            db.close()

    # -- key/value: the daemon's view of drive, cloud, health -------------------------------

    def put(self, key: str, value: Any) -> None:
        with self.connect() as db:
            db.execute(
                "INSERT INTO kv (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value, sort_keys=True)),
            )

    def get(self, key: str, default: Any = None) -> Any:
        with self.connect() as db:
            row = db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return json.loads(row["value"]) if row else default

    # -- jobs -------------------------------------------------------------------------------

    def job_started(self, kind: str, origin: str) -> int:
        with self.connect() as db:
            cur = db.execute(
                "INSERT INTO jobs (kind, origin, started) VALUES (?, ?, ?)",
                (kind, origin, time.time()),
            )
            return int(cur.lastrowid or 0)

    def job_finished(self, job: int, outcome: str, message: str, details: object) -> None:
        with self.connect() as db:
            db.execute(
                "UPDATE jobs SET finished = ?, outcome = ?, message = ?, details = ? WHERE id = ?",
                (time.time(), outcome, message, json.dumps(details, sort_keys=True), job),
            )

    def job_progress(self, job: int, progress: float, message: str) -> None:
        with self.connect() as db:
            db.execute(
                "UPDATE jobs SET progress = ?, progress_message = ? WHERE id = ?",
                (progress, message, job),
            )

    def interrupted_jobs(self, message: str) -> int:
        """Jobs still open from a run of the daemon that ended without closing them."""
        with self.connect() as db:
            cur = db.execute(
                "UPDATE jobs SET finished = ?, outcome = 'cancelled', message = ? "
                "WHERE outcome IS NULL AND origin IN ('daemon', 'panel')",
                (time.time(), message),
            )
            return cur.rowcount

    def jobs(self, limit: int = 20, kind: str | None = None) -> list[dict[str, object]]:
        query = "SELECT * FROM jobs"
        args: tuple[object, ...] = ()
        if kind:
            query += " WHERE kind = ?"
            args = (kind,)
        query += " ORDER BY id DESC LIMIT ?"
        with self.connect() as db:
            rows = db.execute(query, (*args, limit)).fetchall()
        return [_job(r) for r in rows]

    def job(self, job: int) -> dict[str, object] | None:
        with self.connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job,)).fetchone()
        return _job(row) if row else None

    # -- per-segment results ----------------------------------------------------------------

    def segment_result(
        self, user: str, segment: str, kind: str, ok: bool, head: str | None, message: str
    ) -> None:
        now = time.time()
        with self.connect() as db:
            db.execute(
                "INSERT INTO segments (user, segment, kind, at, ok, head, message, last_ok) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (user, segment, kind) DO UPDATE SET "
                "at = excluded.at, ok = excluded.ok, head = excluded.head, "
                "message = excluded.message, last_ok = COALESCE(excluded.last_ok, last_ok)",
                (user, segment, kind, now, int(ok), head, message, now if ok else None),
            )

    def segment_results(self) -> list[dict[str, object]]:
        with self.connect() as db:
            rows = db.execute("SELECT * FROM segments ORDER BY user, segment, kind").fetchall()
        return [
            {
                "user": r["user"],
                "segment": r["segment"],
                "kind": r["kind"],
                "at": iso(r["at"]),
                "ok": bool(r["ok"]),
                "head": r["head"],
                "message": r["message"],
                "last_ok": iso(r["last_ok"]),
                "at_ts": r["at"],
                "last_ok_ts": r["last_ok"],
            }
            for r in rows
        ]

    # -- requests: the panel asks, the daemon does ------------------------------------------

    def request(self, kind: str, requested_by: str) -> int:
        """Ask the daemon for a job or an eject; an identical open request is reused."""
        with self.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute(
                "SELECT id FROM requests WHERE kind = ? AND finished IS NULL AND job IS NULL",
                (kind,),
            ).fetchone()
            if row:
                found = int(row["id"])
            else:
                cur = db.execute(
                    "INSERT INTO requests (kind, requested_by, requested) VALUES (?, ?, ?)",
                    (kind, requested_by, time.time()),
                )
                found = int(cur.lastrowid or 0)
            db.execute("COMMIT")
        return found

    def open_requests(self) -> list[dict[str, Any]]:
        """Requests the daemon has not started yet, oldest first."""
        with self.connect() as db:
            rows = db.execute(
                "SELECT * FROM requests WHERE finished IS NULL AND job IS NULL ORDER BY id"
            ).fetchall()
        return [dict(r) for r in rows]

    def get_request(self, request: int) -> dict[str, Any] | None:
        with self.connect() as db:
            row = db.execute("SELECT * FROM requests WHERE id = ?", (request,)).fetchone()
        return dict(row) if row else None

    def recent_requests(self, limit: int) -> list[dict[str, Any]]:
        with self.connect() as db:
            rows = db.execute(
                "SELECT * FROM requests ORDER BY id DESC LIMIT ?", (limit,)
            ).fetchall()
        return [dict(r) for r in rows]

    def request_started(self, request: int, job: int) -> None:
        with self.connect() as db:
            db.execute("UPDATE requests SET job = ? WHERE id = ?", (job, request))

    def request_done(self, request: int, ok: bool, message: str) -> None:
        with self.connect() as db:
            db.execute(
                "UPDATE requests SET finished = ?, ok = ?, message = ? "
                "WHERE id = ? AND finished IS NULL",
                (time.time(), int(ok), message, request),
            )

    def abandon_requests(self, message: str) -> int:
        """Requests left open by a run of the daemon that has ended."""
        with self.connect() as db:
            cur = db.execute(
                "UPDATE requests SET finished = ?, ok = 0, message = ? WHERE finished IS NULL",
                (time.time(), message),
            )
            return cur.rowcount

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE): committed on success, else rolled back."""
        with self.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    # -- the panel's sign-ins: the panel's own store (bluegrass.panel.accounts) -----------

    @contextlib.contextmanager
    def web_accounts(self) -> Iterator[WebAccounts]:
        """The panel's sign-ins over a connection of their own (autocommit)."""
        with self.connect() as db:
            yield WebAccounts(db)

    def has_web_admin(self) -> bool:
        with self.web_accounts() as store:
            return store.has_admin()

    # -- alerts -----------------------------------------------------------------------------

    def alert(self, kind: str, subject: str, message: str) -> Alert:
        """Raise an alert; the same unacknowledged one again only counts up and refreshes."""
        now = time.time()
        with self.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute(
                "SELECT id FROM alerts WHERE kind = ? AND subject = ? AND acknowledged IS NULL",
                (kind, subject),
            ).fetchone()
            if row:
                db.execute(
                    "UPDATE alerts SET count = count + 1, last_seen = ?, message = ? WHERE id = ?",
                    (now, message, row["id"]),
                )
                alert_id = row["id"]
            else:
                cur = db.execute(
                    "INSERT INTO alerts (kind, subject, message, first_seen, last_seen) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (kind, subject, message, now, now),
                )
                alert_id = cur.lastrowid
            db.execute("COMMIT")
            found = db.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        return _alert(found)

    def alerts(self, include_acknowledged: bool = False) -> list[Alert]:
        query = "SELECT * FROM alerts"
        if not include_acknowledged:
            query += " WHERE acknowledged IS NULL"
        with self.connect() as db:
            return [_alert(r) for r in db.execute(query + " ORDER BY id").fetchall()]

    def acknowledge(self, alert_id: int | None) -> int:
        """Acknowledge one alert, or all with None; returns how many changed."""
        with self.connect() as db:
            if alert_id is None:
                cur = db.execute(
                    "UPDATE alerts SET acknowledged = ? WHERE acknowledged IS NULL", (time.time(),)
                )
            else:
                cur = db.execute(
                    "UPDATE alerts SET acknowledged = ? WHERE id = ? AND acknowledged IS NULL",
                    (time.time(), alert_id),
                )
            return cur.rowcount


def _job(r: sqlite3.Row) -> dict[str, object]:
    return {
        "id": r["id"],
        "kind": r["kind"],
        "origin": r["origin"],
        "started": iso(r["started"]),
        "finished": iso(r["finished"]),
        "started_ts": r["started"],
        "finished_ts": r["finished"],
        "outcome": r["outcome"],
        "message": r["message"],
        "progress": r["progress"],
        "progress_message": r["progress_message"],
        "details": json.loads(r["details"]) if r["details"] else None,
    }


def _alert(row: sqlite3.Row) -> Alert:
    return Alert(
        id=row["id"],
        kind=row["kind"],
        subject=row["subject"],
        message=row["message"],
        first_seen=row["first_seen"],
        last_seen=row["last_seen"],
        count=row["count"],
        acknowledged=row["acknowledged"],
    )
