"""The daily commit: every segment at its `commit_at` local time, then `maintain`.

Each segment's run is identified by the occurrence it belongs to (its last HH:MM at or before
now) and recorded in the job history, so a server that was down at 03:00 commits as soon as
it is back, once, and a restart does not commit twice. A segment whose repository is busy (an
on-demand `commit` holds its lock) is retried after a short, growing delay. One with a file
being uploaded into it (a laptop's sync: its first upload, say) waits until no upload has
been seen in it for UPLOAD_QUIET seconds, looking every UPLOAD_POLL seconds, for at most
`upload_wait_minutes`, so the day's snapshot is not of a tree half uploaded; after that it
commits without the files in flight (they are reported, and wait for the next commit). Any
other failure is logged and recorded, and waits for the next day. Each tick also measures
again the users with a storage quota whose use is older than quota.MAX_AGE. After a tick
that committed something, the replica's thread is poked (bluegrass.cloud.replica.schedule).
A failed commit raises `commit-failed` for its segment, the next good one resolves it; a tick
that commits pings the commit job's URL (bluegrass.cloud.notifications).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from bluegrass.cloud import corruption, notifications, quota, settings
from bluegrass.cloud.accounts import Accounts
from bluegrass.cloud.commits import commit_one, is_busy, summary, upload_in_flight
from bluegrass.cloud.database import now_text
from bluegrass.cloud.datadir import DataRoot
from bluegrass.cloud.jobhistory import Job
from bluegrass.cloud.maintenance import maintain_one
from bluegrass.cloud.maintenance import summary as maintain_summary
from bluegrass.cloud.replica.schedule import ReplicaRunner
from bluegrass.core.config import Config
from bluegrass.core.errors import BluegrassError
from bluegrass.core.notify import Notifier, Ping

Log = Callable[[str], None]
TICK = 30.0  # new segments and config edits are noticed within this long
FIRST_RETRY = 2.0
MAX_RETRY = 300.0
# Between two files of an upload there is a moment with none in flight: a sync is taken as
# ended only when none has been seen for this long.
UPLOAD_QUIET = 60.0
UPLOAD_POLL = 10.0


def last_occurrence(now: datetime, clock: str) -> datetime:
    """The latest local time `clock` ("HH:MM") at or before `now` (naive local time)."""
    hour, minute = (int(x) for x in clock.split(":"))
    today = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return today if today <= now else today - timedelta(days=1)


class Scheduler(threading.Thread):
    def __init__(self, root: DataRoot, stop: threading.Event, log: Log) -> None:
        super().__init__(name="scheduler", daemon=True)
        self.root = root
        self.stop = stop
        self.log = log
        self.cfg: Config | None = None
        self._config_error = ""
        # (user, segment) -> (monotonic time of the next try, delay after that)
        self._retry: dict[tuple[str, str], tuple[float, float]] = {}
        # (user, segment) -> (occurrence, monotonic times: began waiting, last saw an upload)
        self._waiting: dict[tuple[str, str], tuple[str, float, float]] = {}
        self.replica = ReplicaRunner(root, stop, log)
        self.notifier: Notifier | None = None
        self._failed: list[str] = []  # this tick's failed commits, for the commit job's ping
        self._ping: Ping | None = None

    def run(self) -> None:
        self.replica.start()
        while not self.stop.is_set():
            try:
                self.tick()
            except Exception as exc:  # a bug here must not end the daily commits for good
                self.log(f"scheduler: error: {exc!r}")
            self.stop.wait(self._next_wait())
        self.replica.halt()

    def _next_wait(self) -> float:
        soonest = min((at for at, _ in self._retry.values()), default=None)
        if soonest is None:
            return TICK
        return max(0.1, min(TICK, soonest - time.monotonic()))

    def _config(self) -> Config | None:
        try:
            self.cfg = settings.load(self.root.path)
            self._config_error = ""
            if self.notifier is None:
                self.notifier = notifications.notifier(
                    self.root.path, self.cfg, self.log, echo=True
                )
            else:
                self.notifier.settings = notifications.settings_of(self.cfg)
        except BluegrassError as exc:
            if str(exc) != self._config_error:  # once per change, not every tick
                self._config_error = str(exc)
                self.log(f"scheduler: {exc}; keeping the last valid configuration")
        return self.cfg

    def due(self, accounts: Accounts, cfg: Config, now: datetime) -> list[tuple[str, str, str]]:
        """(user, segment, occurrence) of every segment whose daily commit has not run yet."""
        found = []
        for user in self.root.users():
            for segment in self.root.segments(user):
                if not self.root.live_tree(user, segment).is_dir():
                    continue
                when = last_occurrence(now, settings.commit_at(cfg, user, segment))
                occurrence = when.strftime("%Y-%m-%dT%H:%M")
                if accounts.done_for("commit", user, segment, occurrence):
                    self._retry.pop((user, segment), None)
                    continue
                retry = self._retry.get((user, segment))
                if retry and retry[0] > time.monotonic():
                    continue
                found.append((user, segment, occurrence))
        return found

    def tick(self) -> None:
        cfg = self._config()
        if cfg is None:
            return
        notifier = self.notifier
        assert notifier is not None  # made with the first configuration
        notifier.flush()  # what a receiver did not take before is tried again
        with Accounts.open(self.root.path) as accounts:
            committed = []
            due = self.due(accounts, cfg, datetime.now())
            # The commit job's ping: started at its first commit of the tick (not while a
            # segment only waits for an upload, polled every few seconds), ended after its last.
            self._ping = notifier.ping(notifications.MAIN_JOB)
            self._failed = []
            for user, segment, occurrence in due:
                if self.stop.is_set():
                    return
                if self._commit(accounts, cfg, user, segment, occurrence):
                    committed.append((user, segment))
            if self._ping.started and self._failed:
                self._ping.fail(1, "\n".join(self._failed))
            elif self._ping.started:
                self._ping.success()
            for user, segment in committed:
                if self.stop.is_set():
                    return
                self._maintain(accounts, user, segment)
            # Uploads and deletions through logins rclone still holds (another device's, a
            # raw client's) move a user across their quota unseen: measured every few minutes.
            quota.refresh(accounts, self.root.path)
            if committed:
                self.replica.poke()

    def _commit(
        self, accounts: Accounts, cfg: Config, user: str, segment: str, occurrence: str
    ) -> bool:
        name = f"{user}/{segment}"
        if self._wait_for_upload(cfg, user, segment, occurrence):
            return False
        started = now_text()
        if self._ping is not None and not self._ping.started:
            self._ping.start()
        try:
            result = commit_one(self.root, cfg, user, segment)
        except BluegrassError as exc:
            if is_busy(exc):
                _, delay = self._retry.get((user, segment), (0.0, FIRST_RETRY))
                self._retry[(user, segment)] = (time.monotonic() + delay, min(delay * 2, MAX_RETRY))
                outcome, detail = "busy", f"busy; retrying in {delay:g}s"
            else:
                outcome, detail = "error", str(exc)
                self._failed.append(f"commit {name}: {detail}")
                self._tell(name, failed=True, detail=detail)
            self.log(f"commit {name}: {detail}")
            accounts.record_job(
                Job("commit", user, segment, occurrence, started, now_text(), outcome, detail)
            )
            return False
        self._retry.pop((user, segment), None)
        detail = summary(result)
        self.log(f"commit {name}: {detail}")
        self._tell(name, failed=False, detail=detail)
        accounts.record_job(
            Job("commit", user, segment, occurrence, started, now_text(), "ok", detail)
        )
        return result.snapshot.committed

    def _tell(self, name: str, *, failed: bool, detail: str) -> None:
        if self.notifier is not None:
            try:
                self.notifier.update("commit-failed", name, active=failed, detail=detail)
            except OSError as exc:  # the state folder, not the network: said, never fatal
                self.log(f"notify: could not record commit-failed {name}: {exc}")

    def _wait_for_upload(self, cfg: Config, user: str, segment: str, occurrence: str) -> bool:
        """Whether to put this commit off because files are being uploaded into the segment."""
        key, name = (user, segment), f"{user}/{segment}"
        limit = cfg.get("schedule.upload_wait_minutes") * 60.0
        found = upload_in_flight(self.root.live_tree(user, segment)) if limit else None
        now = time.monotonic()
        waiting = self._waiting.get(key)
        if waiting is not None and waiting[0] != occurrence:
            waiting = None
        if waiting is None:
            if found is None:
                return False
            self.log(f"commit {name}: waiting for the upload of {found} and any after it")
            waiting = (occurrence, now, now)
        elif found is not None:
            waiting = (occurrence, waiting[1], now)
        if now - waiting[1] >= limit:
            self.log(
                f"commit {name}: still being uploaded into after {limit / 60:g} min; "
                "committing without the files in flight"
            )
        elif found is None and now - waiting[2] >= UPLOAD_QUIET:
            self.log(f"commit {name}: no upload for {UPLOAD_QUIET:g} s; committing")
        else:
            self._waiting[key] = waiting
            self._retry[key] = (now + UPLOAD_POLL, FIRST_RETRY)
            return True
        self._waiting.pop(key, None)
        return False

    def _maintain(self, accounts: Accounts, user: str, segment: str) -> None:
        started = now_text()
        path: Path = self.root.repo_path(user, segment)
        try:
            # Never "maintained" over damage: the commit's check may have left loose objects
            # out (decision 221); this one reads them all.
            corruption.check_before_writing(self.root, user, segment, "maintain")
            outcome, detail = "ok", maintain_summary(maintain_one(path))
        except BluegrassError as exc:
            # Packing can wait a day; a busy repository is simply done tomorrow.
            outcome = "busy" if is_busy(exc) else "error"
            detail = "busy; skipped until the next commit" if is_busy(exc) else str(exc)
        self.log(f"maintain {user}/{segment}: {detail}")
        accounts.record_job(
            Job("maintain", user, segment, None, started, now_text(), outcome, detail)
        )
