"""The web interface's background jobs ("snapshot now"), in DATA/bluegrass.db.

Their state lives here, not in a process, because every gunicorn worker must see it;
bluegrass.cloud.webjobs starts and watches them.
"""

from __future__ import annotations

from dataclasses import dataclass

from bluegrass.cloud.database import Database


@dataclass(frozen=True)
class WebJob:
    id: str
    owner: str
    kind: str
    label: str
    user: str
    segment: str
    state: str  # queued, running, done, failed
    progress: float | None
    message: str
    started: float
    finished: float | None

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")


class WebJobStore(Database):
    """The web interface's jobs: started by an owner, on one segment."""

    _WEB_JOB_COLUMNS = (
        "id, owner, kind, label, user, segment, state, progress, message, started, finished"
    )

    def add_web_job(self, job: WebJob) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO web_jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job.id,
                    job.owner,
                    job.kind,
                    job.label,
                    job.user,
                    job.segment,
                    job.state,
                    job.progress,
                    job.message,
                    job.started,
                    job.finished,
                ),
            )

    def update_web_job(
        self,
        job_id: str,
        *,
        state: str,
        message: str,
        progress: float | None,
        finished: float | None = None,
        only_if_active: bool = False,
    ) -> bool:
        """Set a job's state; with `only_if_active`, only a job that has not ended yet."""
        query = (
            "UPDATE web_jobs SET state = ?, message = ?, progress = ?, finished = ? WHERE id = ?"
        )
        if only_if_active:
            query += " AND state IN ('queued', 'running')"
        with self.transaction() as db:
            done = db.execute(query, (state, message, progress, finished, job_id))
        return done.rowcount > 0

    def web_job(self, job_id: str) -> WebJob | None:
        row = self.db.execute(
            f"SELECT {self._WEB_JOB_COLUMNS} FROM web_jobs WHERE id = ?",  # noqa: S608 - ours
            (job_id,),
        ).fetchone()
        return WebJob(*row) if row else None

    def web_jobs(self, owner: str, limit: int = 5) -> list[WebJob]:
        rows = self.db.execute(
            f"SELECT {self._WEB_JOB_COLUMNS} FROM web_jobs WHERE owner = ? "  # noqa: S608 - ours
            "ORDER BY started DESC LIMIT ?",
            (owner, limit),
        )
        return [WebJob(*row) for row in rows]

    def active_web_jobs(self, user: str, segment: str) -> list[WebJob]:
        rows = self.db.execute(
            f"SELECT {self._WEB_JOB_COLUMNS} FROM web_jobs "  # noqa: S608 - ours
            "WHERE user = ? AND segment = ? AND state IN ('queued', 'running') ORDER BY started",
            (user, segment),
        )
        return [WebJob(*row) for row in rows]
