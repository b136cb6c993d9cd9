"""The appliance's state in SQLite: jobs, per-segment results, alerts, and the daemon's view.

The daemon writes; `status` and the panel read, from other processes at any time (WAL mode).
Times are seconds since the epoch (UTC); they are shown in local time.
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

SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,             -- mirror | files
    origin TEXT NOT NULL,           -- daemon | command
    started REAL NOT NULL,
    finished REAL,
    outcome TEXT,                   -- NULL while running; see jobs.Outcome
    message TEXT,
    details TEXT                    -- JSON: per-segment results
);
CREATE INDEX IF NOT EXISTS jobs_kind ON jobs (kind, started);
CREATE TABLE IF NOT EXISTS segments (
    user TEXT NOT NULL,
    segment TEXT NOT NULL,
    kind TEXT NOT NULL,             -- mirror | files
    at REAL NOT NULL,
    ok INTEGER NOT NULL,
    head TEXT,
    message TEXT,
    PRIMARY KEY (user, segment, kind)
);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,             -- rewrite | bad-objects | drive-full | ... (docs/appliance.md)
    subject TEXT NOT NULL,          -- user/segment, or the drive
    message TEXT NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    count INTEGER NOT NULL DEFAULT 1,
    acknowledged REAL
);
"""


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
            db.executescript(SCHEMA)

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

    def jobs(self, limit: int = 20, kind: str | None = None) -> list[dict[str, object]]:
        query = "SELECT * FROM jobs"
        args: tuple[object, ...] = ()
        if kind:
            query += " WHERE kind = ?"
            args = (kind,)
        query += " ORDER BY id DESC LIMIT ?"
        with self.connect() as db:
            rows = db.execute(query, (*args, limit)).fetchall()
        return [
            {
                "id": r["id"],
                "kind": r["kind"],
                "origin": r["origin"],
                "started": iso(r["started"]),
                "finished": iso(r["finished"]),
                "started_ts": r["started"],
                "outcome": r["outcome"],
                "message": r["message"],
                "details": json.loads(r["details"]) if r["details"] else None,
            }
            for r in rows
        ]

    # -- per-segment results ----------------------------------------------------------------

    def segment_result(
        self, user: str, segment: str, kind: str, ok: bool, head: str | None, message: str
    ) -> None:
        with self.connect() as db:
            db.execute(
                "INSERT INTO segments (user, segment, kind, at, ok, head, message) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (user, segment, kind) DO UPDATE SET "
                "at = excluded.at, ok = excluded.ok, head = excluded.head, "
                "message = excluded.message",
                (user, segment, kind, time.time(), int(ok), head, message),
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
            }
            for r in rows
        ]

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
