"""`bluegrass run`: the daemon. Syncs each segment on its interval until stopped.

Segments are synced one at a time: first when the daemon starts (unless one synced less than
an interval ago), then every interval (default 15 minutes) with 10% jitter; after a failure,
retries back off 1, 2, 4, ... minutes up to [sync] backoff_max_minutes. The configuration is
re-read between syncs, so `bluegrass segment add` takes effect without a restart.

SIGTERM or SIGINT (Ctrl-C) stops it cleanly: a sync under way is asked to finish gracefully
(rclone completes the transfers in flight and saves its state), then the daemon exits 0.
Only one daemon runs per user.
"""

from __future__ import annotations

import argparse
import os
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bluegrass.core.errors import BluegrassError, ConfigError, UsageError
from bluegrass.laptop import actions, locking, report, schedule
from bluegrass.laptop.bisync import OK, SegmentSync
from bluegrass.laptop.progress import Progress
from bluegrass.laptop.runner import Interrupts
from bluegrass.laptop.state import SegmentFiles, parse_time, save_daemon_info

POLL_SECONDS = 5.0  # wall-clock checks: config edits and a laptop waking from sleep


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="keep syncing on a schedule (what the service runs)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(handler=run)


def _log(text: str) -> None:
    stamp = datetime.now().astimezone().isoformat(timespec="seconds")
    print(f"{stamp} {text}", flush=True)


def run(_args: argparse.Namespace) -> int:
    current = actions.load(enrolled=True)
    places = current.places
    lock = locking.FileLock(places.daemon_lock)
    try:
        lock.acquire()
    except locking.Busy:
        raise UsageError("`bluegrass run` is already running for this user") from None
    rng = random.Random()  # noqa: S311 - jitter, not secrecy
    due: dict[str, datetime] = {}
    started = datetime.now(UTC)
    config_mtime = _mtime(current.path)

    def publish() -> None:
        save_daemon_info(
            places,
            {
                "pid": os.getpid(),
                "started": started.isoformat(timespec="seconds"),
                "next_run": {k: v.isoformat(timespec="seconds") for k, v in sorted(due.items())},
            },
        )

    _log(f"bluegrass run: started (pid {os.getpid()})")
    try:
        with Interrupts() as interrupts:
            while not interrupts.requested.is_set():
                mtime = _mtime(current.path)
                if mtime != config_mtime:
                    config_mtime = mtime
                    try:
                        current = actions.load(enrolled=True)
                        _log("configuration re-read")
                    except (ConfigError, UsageError) as exc:
                        _log(f"bluegrass: error: {exc} (keeping the previous configuration)")
                segments = current.segments()
                now = datetime.now(UTC)
                for name in list(due):
                    if name not in segments:
                        del due[name]
                for name, segment in segments.items():
                    if name not in due:
                        last = SegmentFiles(places, name).load().last_run
                        finished = (
                            parse_time(last.finished) if last and last.outcome == OK else None
                        )
                        due[name] = schedule.first_due(finished, segment.interval_minutes, now)
                publish()
                ready = sorted((when, name) for name, when in due.items() if when <= now)
                for _, name in ready:
                    if interrupts.requested.is_set():
                        break
                    segment = segments[name]
                    progress = Progress(name, plain_every=30.0)
                    engine = SegmentSync(
                        current, segment, interrupts=interrupts, on_record=progress
                    )
                    try:
                        outcome = engine.run()
                    except BluegrassError as exc:
                        _log(f"{name}: error: {exc}")
                        outcome = None
                    finally:
                        progress.finish()
                    if outcome is not None:
                        for line in report.outcome_lines(name, outcome):
                            _log(line)
                    failures = SegmentFiles(places, name).load().failures
                    if outcome is not None and not outcome.recorded:
                        wait = schedule.BUSY_SECONDS
                    else:
                        wait = schedule.delay_seconds(
                            ok=outcome is not None and outcome.kind == OK,
                            failures=max(failures, 1),
                            interval_minutes=segment.interval_minutes,
                            backoff_max_minutes=current.sync["backoff_max_minutes"],
                            rng=rng,
                        )
                    due[name] = datetime.now(UTC) + timedelta(seconds=wait)
                    publish()
                soonest = min(due.values(), default=None)
                pause = POLL_SECONDS
                if soonest is not None:
                    pause = min(pause, max((soonest - datetime.now(UTC)).total_seconds(), 0.0))
                if pause > 0:
                    interrupts.requested.wait(pause)
    finally:
        due.clear()
        try:
            places.daemon_info.unlink(missing_ok=True)
        finally:
            lock.release()
    _log("bluegrass run: stopped")
    return 0


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None
