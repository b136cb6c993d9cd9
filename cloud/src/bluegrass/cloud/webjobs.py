"""Jobs started from the web interface ("snapshot now"), each in a process of its own.

`start` records the job in DATA/bluegrass.db (table web_jobs, read by every gunicorn worker)
and starts `python -m bluegrass.cloud.webjobs JOB`, which runs the same code as
`bluegrass-cloud commit` (bluegrass.cloud.commits.commit_one), writes its state as it
goes, logs one line on stderr (the run log) and adds the outcome to the job history.

A process rather than a thread of the worker: gunicorn replaces workers (a crash, a restart
of the web server), and a job must neither die with them nor keep a snapshot's memory in a
long-lived worker afterwards.

Liveness: the worker takes an exclusive flock on DATA/run/jobs/JOB.lock before starting the
process, and hands the locked descriptor down to it. The lock lasts exactly as long as the
job's process, whatever way it ends, so a job still marked queued or running whose lock can
be taken has died without finishing, and `refresh` marks it failed.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from bluegrass.cloud import settings
from bluegrass.cloud.accounts import Accounts
from bluegrass.cloud.commits import BUSY, commit_one, is_busy, summary
from bluegrass.cloud.database import now_text
from bluegrass.cloud.datadir import DataRoot
from bluegrass.cloud.jobhistory import Job
from bluegrass.cloud.webjobstore import WebJob
from bluegrass.core.errors import BluegrassError

KINDS = {"commit": "Snapshot now"}
LOCKS = Path("run") / "jobs"
INTERRUPTED = "The job stopped before it finished (was the server restarted?); start it again."


def _lock_path(root: DataRoot, job_id: str) -> Path:
    return root.path / LOCKS / f"{job_id}.lock"


def start(root: DataRoot, owner: str, kind: str, user: str, segment: str) -> WebJob:
    """Record a job and start its process; returns at once. One job per segment at a time."""
    if kind not in KINDS:
        raise BluegrassError(f"unknown job {kind!r}")
    with Accounts.open(root.path) as accounts:
        for running in accounts.active_web_jobs(user, segment):
            current = refresh(root, running)
            if current.active:
                return current  # already under way: show that one
    job = WebJob(
        id=secrets.token_hex(8),
        owner=owner,
        kind=kind,
        label=f"Snapshot of {user}/{segment}",
        user=user,
        segment=segment,
        state="queued",
        progress=0.0,
        message="Starting…",
        started=time.time(),
        finished=None,
    )
    lock = _lock_path(root, job.id)
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with Accounts.open(root.path) as accounts:
            accounts.add_web_job(job)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RCLONE_", "GUNICORN_"))}
        env["BLUEGRASS_DATA"] = str(root.path)
        try:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bluegrass.cloud.webjobs",
                    "--data",
                    str(root.path),
                    "--lock-fd",
                    str(fd),
                    job.id,
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                pass_fds=(fd,),
                env=env,
                cwd=root.path,
                # Not in the worker's session: a worker being stopped does not stop the job.
                start_new_session=True,
            )
        except OSError as exc:
            with Accounts.open(root.path) as accounts:
                accounts.update_web_job(
                    job.id,
                    state="failed",
                    message=f"could not start the job: {exc}",
                    progress=None,
                    finished=time.time(),
                )
            lock.unlink(missing_ok=True)
            raise BluegrassError(f"could not start the job: {exc}") from exc
    finally:
        os.close(fd)  # the job's process holds the lock from here on
    # Reap it when it ends (if this worker is gone by then, init does).
    threading.Thread(target=proc.wait, name=f"job-{job.id}", daemon=True).start()
    return job


def refresh(root: DataRoot, job: WebJob) -> WebJob:
    """The job as it is now: an active job whose process is gone is marked failed."""
    if not job.active:
        return job
    try:
        fd = os.open(_lock_path(root, job.id), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        gone = True
    else:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            gone = True
        except BlockingIOError:
            gone = False
        finally:
            os.close(fd)
    with Accounts.open(root.path) as accounts:
        if gone:
            # Only if it is still active: it may have finished between the two looks.
            accounts.update_web_job(
                job.id,
                state="failed",
                message=INTERRUPTED,
                progress=None,
                finished=time.time(),
                only_if_active=True,
            )
        found = accounts.web_job(job.id)
    return found or job


def get(root: DataRoot, job_id: str) -> WebJob | None:
    with Accounts.open(root.path) as accounts:
        found = accounts.web_job(job_id)
    return refresh(root, found) if found else None


def _log(message: str) -> None:
    stamp = datetime.now().astimezone().isoformat(timespec="seconds")
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(f"{stamp} {message}\n")
        sys.stderr.flush()


def run_job(root: DataRoot, job_id: str) -> int:
    """The job's process: run it and record every change of state."""
    with Accounts.open(root.path) as accounts:
        job = accounts.web_job(job_id)
        if job is None or job.state != "queued":
            return 2
        accounts.update_web_job(
            job_id,
            state="running",
            message=f"Taking a snapshot of {job.user}/{job.segment}…",
            progress=None,  # the store reports no progress of its own: shown as under way
        )
    started = now_text()
    name = f"{job.user}/{job.segment}"
    try:
        result = commit_one(root, settings.load(root.path), job.user, job.segment)
    except BluegrassError as exc:
        state, outcome = "failed", "busy" if is_busy(exc) else "error"
        detail = BUSY if is_busy(exc) else str(exc)
    except Exception as exc:  # the page must say it stopped, whatever the reason
        state, outcome, detail = "failed", "error", f"internal error: {exc!r}"
    else:
        state, outcome, detail = "done", "ok", summary(result)
    with Accounts.open(root.path) as accounts:
        accounts.update_web_job(
            job_id,
            state=state,
            message=detail[:1].upper() + detail[1:],
            progress=1.0 if state == "done" else None,
            finished=time.time(),
        )
        # The job history beside the scheduler's (scheduled_for NULL: on demand).
        accounts.record_job(
            Job(
                "commit",
                job.user,
                job.segment,
                None,
                started,
                now_text(),
                outcome,
                f"on demand from the web interface by {job.owner}: {detail}",
            )
        )
    _log(f"commit {name} (web, by {job.owner}): {detail}")
    return 0 if state == "done" else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bluegrass.cloud.webjobs",
        description="Run one job the web interface started (internal).",
    )
    parser.add_argument("--data", required=True)
    parser.add_argument("--lock-fd", type=int, required=True)
    parser.add_argument("job")
    args = parser.parse_args(argv)
    root = DataRoot(Path(args.data))
    try:
        return run_job(root, args.job)
    finally:
        # Gone before the lock is released: a later look finds the state already final.
        _lock_path(root, args.job).unlink(missing_ok=True)
        os.close(args.lock_fd)


if __name__ == "__main__":
    sys.exit(main())
