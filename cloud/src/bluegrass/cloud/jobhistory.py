"""The history of jobs that ran (daily commits, maintenance), in DATA/bluegrass.db.

The scheduler reads it to know whether the job due at a time has run; the dashboard, how a
segment's last snapshot ended.
"""

from __future__ import annotations

from dataclasses import dataclass

from bluegrass.cloud.database import Database


@dataclass(frozen=True)
class Job:
    kind: str
    user: str
    segment: str
    scheduled_for: str | None
    started: str
    finished: str
    outcome: str
    detail: str


class JobHistory(Database):
    """Jobs that ran, by kind and segment."""

    def record_job(self, job: Job) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO jobs (kind, user, segment, scheduled_for, started, finished, "
                "outcome, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job.kind,
                    job.user,
                    job.segment,
                    job.scheduled_for,
                    job.started,
                    job.finished,
                    job.outcome,
                    job.detail,
                ),
            )

    def jobs(self, kind: str, user: str, segment: str) -> list[Job]:
        rows = self.db.execute(
            "SELECT kind, user, segment, scheduled_for, started, finished, outcome, detail "
            "FROM jobs WHERE kind = ? AND user = ? AND segment = ? ORDER BY id",
            (kind, user, segment),
        )
        return [Job(*row) for row in rows]

    def last_job(self, kind: str, user: str, segment: str) -> Job | None:
        row = self.db.execute(
            "SELECT kind, user, segment, scheduled_for, started, finished, outcome, detail "
            "FROM jobs WHERE kind = ? AND user = ? AND segment = ? ORDER BY id DESC LIMIT 1",
            (kind, user, segment),
        ).fetchone()
        return Job(*row) if row else None

    def done_for(self, kind: str, user: str, segment: str, scheduled_for: str) -> bool:
        """Whether the job scheduled for this time has run to an end (not merely been busy)."""
        row = self.db.execute(
            "SELECT 1 FROM jobs WHERE kind = ? AND user = ? AND segment = ? "
            "AND scheduled_for = ? AND outcome != 'busy'",
            (kind, user, segment, scheduled_for),
        ).fetchone()
        return row is not None
