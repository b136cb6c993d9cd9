"""Running git and rclone for a job so that the daemon can stop them at any moment.

Each child runs in its own process group: cancelling (drive pulled, SIGTERM) signals the whole
group, so a git fetch's index-pack or an rclone's helpers stop too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from bluegrass.appliance.errors import Cancelled

GRACE_SECONDS = 10

# A job's progress: (segments done, segments in all, what it is doing now).
Progress = Callable[[int, int, str], None]


class Runner:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._cancelled: str | None = None

    @property
    def cancelled(self) -> str | None:
        return self._cancelled

    def check(self) -> None:
        if self._cancelled:
            raise Cancelled(self._cancelled)

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        input: bytes | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        with self._lock:
            self.check()
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
            )
            self._proc = proc
        try:
            out, err = proc.communicate(input)
        finally:
            with self._lock:
                self._proc = None
        self.check()
        return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)

    def cancel(self, reason: str) -> None:
        """Stop the running child (SIGTERM, then SIGKILL) and make every later run fail."""
        with self._lock:
            self._cancelled = reason
            proc = self._proc
        if proc is None:
            return
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
