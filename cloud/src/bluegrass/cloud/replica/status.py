"""The replica as the dashboard and /health show it: when the last complete upload ended,
how big the replica is, and whether the last attempt failed and why.

Every replicate of the whole server (`run`'s thread, the `replicate` command without
--user) is a row of the job history (kind "replicate"); the size is read from the records of
the newest manifests (DATA/replica/state/), so showing it costs no request to the bucket.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from bluegrass.cloud import settings
from bluegrass.cloud.database import now_text
from bluegrass.cloud.jobhistory import Job, JobHistory
from bluegrass.cloud.replica import keys
from bluegrass.cloud.replica.replicate import Local
from bluegrass.core.config import Config

KIND = "replicate"
OK, FAILED, UNREACHABLE = "ok", "failed", "unreachable"
# How far back a failing streak is followed to say since when (retries are at most hourly).
_STREAK = 500


@dataclass(frozen=True)
class ReplicaStatus:
    last_complete: str | None  # when the last replicate that sent everything ended (UTC)
    size: int  # bytes the newest manifests name (histories and server state, unencrypted)
    areas: int  # areas with a manifest: the server's and one per user
    problem: str | None  # the last replicate's failure, as it was said; None when it worked
    failing_since: str | None  # the first failure after the last success
    attempts: int  # failed attempts since the last success

    @property
    def ok(self) -> bool:
        return self.problem is None

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "ok": self.ok}


def record(history: JobHistory, started: str, outcome: str, detail: str) -> None:
    history.record_job(Job(KIND, "", "", None, started, now_text(), outcome, detail))


def size_of(data_root: Path) -> tuple[int, int]:
    """(bytes, areas) named by the newest manifest of every area this server knows."""
    total = areas = 0
    for path in sorted((keys.folder(data_root) / "state").glob("*.json")):
        manifest = Local(path).manifest
        if manifest is not None:
            areas += 1
            total += sum(o.size for o in manifest.objects())
    return total, areas


def read(data_root: Path, history: JobHistory, cfg: Config) -> ReplicaStatus | None:
    """None when no replica is configured: nothing to show."""
    if not settings.replica_enabled(cfg):
        return None
    failed = []
    for job in history.recent_jobs(KIND, "", "", _STREAK):
        if job.outcome == OK:
            break
        failed.append(job)
    last_ok = history.last_job_with(KIND, "", "", OK)
    size, areas = size_of(data_root)
    problem = failed[0].detail if failed else None
    return ReplicaStatus(
        last_complete=last_ok.finished if last_ok else None,
        size=size,
        areas=areas,
        problem=problem,
        failing_since=failed[-1].finished if failed else None,
        attempts=len(failed),
    )
