"""The laptop's daemon loop (`bluegrass run`): each segment synced on its interval until stopped.

Segments are synced one at a time: first when the daemon starts (unless one synced less than
an interval ago), then every interval with 10% jitter; after a failure, retries back off 1, 2,
4, ... minutes up to [sync] backoff_max_minutes. The configuration is re-read when its file
changes, so `bluegrass segment add` takes effect without a restart (decision 25).

Each sync pings `[notify] ping_url` (start, then success or its exit code and report), and a
segment whose syncs have failed for `[notify] sync_failing_hours` raises `sync-failing`,
resolved by its next good sync (bluegrass.laptop.notifications).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bluegrass.core.errors import BluegrassError, ConfigError, UsageError
from bluegrass.laptop import notifications, report, schedule
from bluegrass.laptop.bisync import OK, Outcome, SegmentSync
from bluegrass.laptop.progress import Progress
from bluegrass.laptop.runner import Interrupts
from bluegrass.laptop.settings import Segment, Settings
from bluegrass.laptop.state import SegmentFiles, parse_time, save_daemon_info

POLL_SECONDS = 5.0  # wall-clock checks: config edits and a laptop waking from sleep


class Daemon:
    """Given the configuration, a way to read it again and a log, sync until interrupted."""

    def __init__(
        self, current: Settings, reload: Callable[[], Settings], log: Callable[[str], None]
    ) -> None:
        self.current = current
        self.reload = reload
        self.log = log
        self.due: dict[str, datetime] = {}
        self.started = datetime.now(UTC)
        self.config_mtime = _mtime(current.path)
        self.rng = random.Random()  # noqa: S311 - jitter, not secrecy
        self.notifier = notifications.notifier(
            current.places.state_dir, current.notify, log, echo=True
        )

    def run(self, interrupts: Interrupts) -> None:
        """Sync what is due, look again every POLL_SECONDS, until `interrupts` says stop."""
        try:
            while not interrupts.requested.is_set():
                self._reread_if_edited()
                segments = self.current.segments()
                self._schedule(segments)
                self._publish()
                self._sync_due(segments, interrupts)
                self.notifier.flush()  # what a receiver did not take is tried again
                self._pause(interrupts)
        finally:
            self.due.clear()

    def _reread_if_edited(self) -> None:
        mtime = _mtime(self.current.path)
        if mtime == self.config_mtime:
            return
        self.config_mtime = mtime
        try:
            self.current = self.reload()
            self.notifier.settings = notifications.settings_of(self.current.notify)
            self.log("configuration re-read")
        except (ConfigError, UsageError) as exc:
            self.log(f"bluegrass: error: {exc} (keeping the previous configuration)")

    def _schedule(self, segments: dict[str, Segment]) -> None:
        """Forget removed segments; give new ones their first time, from their last good
        sync (a daemon restarted at every login does not sync every time)."""
        now = datetime.now(UTC)
        for name in [n for n in self.due if n not in segments]:
            del self.due[name]
        for name, segment in segments.items():
            if name in self.due:
                continue
            last = SegmentFiles(self.current.places, name).load().last_run
            finished = parse_time(last.finished) if last and last.outcome == OK else None
            self.due[name] = schedule.first_due(finished, segment.interval_minutes, now)

    def _sync_due(self, segments: dict[str, Segment], interrupts: Interrupts) -> None:
        now = datetime.now(UTC)
        for _, name in sorted((when, name) for name, when in self.due.items() if when <= now):
            if interrupts.requested.is_set():
                return
            outcome = self._sync(segments[name], interrupts)
            wait = self._next_wait(segments[name], outcome)
            self.due[name] = datetime.now(UTC) + timedelta(seconds=wait)
            self._publish()

    def _sync(self, segment: Segment, interrupts: Interrupts) -> Outcome | None:
        progress = Progress(segment.name, plain_every=30.0)
        engine = SegmentSync(self.current, segment, interrupts=interrupts, on_record=progress)
        ping = self.notifier.ping(notifications.MAIN_JOB)
        ping.start()
        try:
            outcome = engine.run()
        except BluegrassError as exc:
            self.log(f"{segment.name}: error: {exc}")
            ping.fail(exc.exit_code, f"{segment.name}: error: {exc}")
            self._tell(segment, failed=True, detail=str(exc))
            return None
        finally:
            progress.finish()
        lines = report.outcome_lines(segment.name, outcome)
        for line in lines:
            self.log(line)
        if outcome.kind == OK:
            ping.success("\n".join(lines))
        else:
            ping.fail(outcome.exit_code or 1, "\n".join(lines))
        if outcome.recorded:  # not when another process was syncing it
            self._tell(segment, failed=outcome.kind != OK, detail=outcome.message)
        return outcome

    def _tell(self, segment: Segment, *, failed: bool, detail: str) -> None:
        hours = self.current.notify["sync_failing_hours"]
        try:
            self.notifier.update(
                "sync-failing", segment.name, active=failed, detail=detail, after=hours * 3600.0
            )
        except OSError as exc:  # the state folder, not the network: said, never fatal
            self.log(f"notify: could not record sync-failing {segment.name}: {exc}")

    def _next_wait(self, segment: Segment, outcome: Outcome | None) -> float:
        """Seconds until this segment's next sync: soon when it was only busy, the interval
        after a good sync, a growing delay after failures."""
        if outcome is not None and not outcome.recorded:
            return schedule.BUSY_SECONDS
        failures = SegmentFiles(self.current.places, segment.name).load().failures
        return schedule.delay_seconds(
            ok=outcome is not None and outcome.kind == OK,
            failures=max(failures, 1),
            interval_minutes=segment.interval_minutes,
            backoff_max_minutes=self.current.sync["backoff_max_minutes"],
            rng=self.rng,
        )

    def _pause(self, interrupts: Interrupts) -> None:
        soonest = min(self.due.values(), default=None)
        pause = POLL_SECONDS
        if soonest is not None:
            pause = min(pause, max((soonest - datetime.now(UTC)).total_seconds(), 0.0))
        if pause > 0:
            interrupts.requested.wait(pause)

    def _publish(self) -> None:
        """What `bluegrass status` shows of the daemon: its pid and the next sync times."""
        save_daemon_info(
            self.current.places,
            {
                "pid": os.getpid(),
                "started": self.started.isoformat(timespec="seconds"),
                "next_run": {
                    k: v.isoformat(timespec="seconds") for k, v in sorted(self.due.items())
                },
            },
        )


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None
