"""Replicating from `run`: once at start (what an earlier run could not send), then after
every daily commit that committed something; while the bucket cannot be reached, again after
a delay that doubles from FIRST_RETRY up to MAX_RETRY.

Its own thread, so that an upload of hours never holds the next day's commits back; the
scheduler only pokes it. Nothing runs when [replica] is not set.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from bluegrass.cloud import settings
from bluegrass.cloud.datadir import Busy, DataRoot
from bluegrass.cloud.replica import status
from bluegrass.cloud.replica.remote import ReplicaUnreachable, stop_all
from bluegrass.cloud.replica.replicate import ReplicateResult, replicate
from bluegrass.core.errors import BluegrassError

FIRST_RETRY = 10.0
MAX_RETRY = 3600.0
IDLE = 1.0  # how often a waiting thread looks at its stop event


def describe(result: ReplicateResult) -> str:
    """One log line: per area, nothing new or what went up."""
    parts = []
    for area in result.areas:
        if area.nothing_new:
            parts.append(f"{area.area}: nothing new")
        else:
            parts.append(f"{area.area}: {area.uploaded} objects, manifest {area.manifest}")
    return "; ".join(parts) + f" ({result.seconds:.1f} s)"


class ReplicaRunner(threading.Thread):
    def __init__(self, root: DataRoot, stop: threading.Event, log: Callable[[str], None]) -> None:
        super().__init__(name="replica", daemon=True)
        self.root = root
        self.stop = stop
        self.log = log
        self._wanted = threading.Event()
        self._wanted.set()
        self._next_try = 0.0
        self._delay = FIRST_RETRY

    def halt(self) -> None:
        """`run` is stopping: end the rclone of a replicate in progress (the run is then
        abandoned like a killed one, and finished at the next start)."""
        stop_all()

    def _halt_on_stop(self) -> None:
        self.stop.wait()
        stop_all()

    def poke(self) -> None:
        """Something was committed: replicate soon."""
        self._wanted.set()

    def run(self) -> None:
        # The scheduler calls halt() only after its current job (a commit may take a while),
        # and a replicate is several threads now: end its rclone as soon as `run` stops.
        threading.Thread(target=self._halt_on_stop, name="replica-stop", daemon=True).start()
        while not self.stop.is_set():
            if not self._wanted.is_set() or time.monotonic() < self._next_try:
                self.stop.wait(IDLE)
                continue
            self._wanted.clear()
            try:
                self.once()
            except Exception as exc:  # a bug here must not end replication for good
                self.log(f"replicate: error: {exc!r}")

    def once(self) -> None:
        try:
            cfg = settings.load(self.root.path)
            if not settings.replica_enabled(cfg):
                return
            result = replicate(self.root, cfg)
        except Busy as exc:  # another replicate is at it: not a problem of the replica
            self._retry(str(exc))
            return
        except ReplicaUnreachable as exc:
            self._record(status.UNREACHABLE, f"{exc} (trying again)")
            self._retry(str(exc))
            return
        except BluegrassError as exc:  # a bad configuration, a damaged secret: said, not retried
            self._record(status.FAILED, str(exc))
            self.log(f"replicate: error: {exc}")
            return
        self._delay = FIRST_RETRY
        self.log(f"replicate: {describe(result)}")
        for error in result.errors:
            self.log(f"replicate {error['area']}: error: {error['error']}")
        if result.errors:
            shown = "; ".join(f"{e['area']}: {e['error']}" for e in result.errors)
            self._record(status.FAILED, shown)
        else:
            self._record(status.OK, describe(result))

    def _record(self, outcome: str, detail: str) -> None:
        """Where the dashboard and /health read it."""
        try:
            status.record(self.root.path, outcome, detail)
        except OSError as exc:
            self.log(f"replicate: could not record the outcome: {exc}")

    def _retry(self, why: str) -> None:
        self.log(f"replicate: {why}; retrying in {self._delay:g}s")
        self._next_try = time.monotonic() + self._delay
        self._delay = min(self._delay * 2, MAX_RETRY)
        self._wanted.set()
