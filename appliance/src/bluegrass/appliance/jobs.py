"""One job (mirror or files) from start to its recorded outcome.

Outcomes, as recorded in the jobs table and shown by `status`:

    ok                 everything listed was mirrored / pulled
    failed             some segments failed (each says why); the others are done
    cloud-unreachable  the cloud did not answer: the daemon backs off
    cloud-refused      the cloud refused this device's credentials or host key (alert)
    drive-failed       the drive failed under the job (pulled, I/O errors): the daemon checks it
    drive-full         no space left on the drive (alert); nothing mirrored before is harmed
    cancelled          stopped: the daemon shut down or the drive went away
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bluegrass.appliance import errors, files, mirror, readme
from bluegrass.appliance.context import Appliance
from bluegrass.appliance.errors import (
    Cancelled,
    CloudRefused,
    CloudUnreachable,
    DriveError,
    DriveFull,
)
from bluegrass.appliance.runner import Runner
from bluegrass.appliance.state import State
from bluegrass.core.errors import BluegrassError

KINDS = ("mirror", "files")


@dataclass
class Outcome:
    kind: str
    outcome: str
    message: str
    details: list[dict[str, object]] = field(default_factory=list)
    job_id: int = 0
    request: int | None = None  # the panel's request this job answers

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    def to_json(self) -> dict[str, object]:
        return {
            "job": self.job_id,
            "kind": self.kind,
            "outcome": self.outcome,
            "message": self.message,
            "segments": self.details,
        }


def run(
    app: Appliance, kind: str, root: Path, runner: Runner, origin: str, request: int | None = None
) -> Outcome:
    """Run one job and record it; `request` is the panel's request it answers, if any."""
    state = app.state
    job_id = state.job_started(kind, origin)
    if request is not None:
        state.request_started(request, job_id)

    def progress(done: int, total: int, doing: str) -> None:
        state.job_progress(
            job_id, done / total if total else 0.0, f"{doing} ({done + 1} of {total})"
        )

    try:
        source = app.source()
        if kind == "mirror":
            report = mirror.mirror_all(root, source, runner, state, progress)
            # The drive's README and RECOVERY.html list the segments: new ones, new dates.
            readme.write(root, app.label)
            result = Outcome(
                kind,
                "ok" if report.ok else "failed",
                report.summary(),
                [r.to_json() for r in report.results],
            )
        else:
            pulled = files.pull_all(
                root, source, app.paths, runner, state, app.config.get("files.transfers"), progress
            )
            result = Outcome(
                kind,
                "ok" if pulled.ok else "failed",
                pulled.summary(),
                [r.to_json() for r in pulled.results],
            )
    except OSError as exc:
        # Anything the drive threw at us outside git and rclone (mkdir, the README).
        result = _classified(kind, errors.from_os_error(exc, f"{kind} job"), state)
    except BluegrassError as exc:
        result = _classified(kind, exc, state)
    result.job_id = job_id
    state.job_finished(job_id, result.outcome, result.message, result.details)
    return result


def _classified(kind: str, exc: BluegrassError, state: State) -> Outcome:
    if isinstance(exc, Cancelled):
        return Outcome(kind, "cancelled", f"stopped: {exc}")
    if isinstance(exc, CloudUnreachable):
        return Outcome(kind, "cloud-unreachable", str(exc))
    if isinstance(exc, CloudRefused):
        state.alert("cloud-refused", "cloud", str(exc))
        return Outcome(kind, "cloud-refused", str(exc))
    if isinstance(exc, DriveFull):
        state.alert("drive-full", "drive", str(exc))
        return Outcome(kind, "drive-full", f"{exc}; nothing already on the drive was harmed")
    if isinstance(exc, DriveError):
        return Outcome(kind, "drive-failed", str(exc))
    return Outcome(kind, "failed", str(exc))
