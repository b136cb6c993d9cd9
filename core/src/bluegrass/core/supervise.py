"""A long-running child process under supervision, and the delay before starting it again.

`Child` runs one program at a time from an argument list (never a shell string): in its own
process group, under `setpriv --pdeathsig TERM` on Linux (a supervisor killed outright takes
it along instead of leaving it holding a port), stdin from /dev/null, stdout discarded and
each stderr line logged as "NAME: line". It is ready once a probe says so of a stderr line;
`stop()` sends SIGTERM to the group and, after a grace period, SIGKILL. `Backoff` is the
restart policy: 1 s doubling to 60 s, and 1 s again after a run that lasted a minute.

The cloud (rclone serve sftp, gunicorn) and the Pi's panel (gunicorn) use it, on Linux only;
core still imports everywhere (the laptop client runs on Windows and macOS), so the POSIX-only
calls are guarded: without process groups a child is stopped by itself.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

Log = Callable[[str], None]
Probe = Callable[[str], object]  # a stderr line -> truthy once the child is ready

POSIX = os.name == "posix"


class Child:
    """One run at a time of a supervised program; `start` it again once it exited or stopped."""

    def __init__(self, name: str, log: Log, ready: Probe, stop_timeout: float) -> None:
        self.name = name
        self.log = log
        self.probe = ready
        self.stop_timeout = stop_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready = threading.Event()
        self.last_line = ""
        self.started = 0.0  # time.monotonic() of the last start
        self._reader: threading.Thread | None = None

    def start(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        command = list(argv)
        setpriv = shutil.which("setpriv")
        if setpriv and sys.platform.startswith("linux"):
            command = [setpriv, "--pdeathsig", "TERM", "--", *command]
        self.ready.clear()
        self.last_line = ""
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cwd,
            # Its own process group: a Ctrl-C in the terminal reaches us, and we stop it.
            process_group=0 if POSIX else None,
        )
        self.started = time.monotonic()
        self._reader = threading.Thread(
            target=self._forward, args=(self.proc,), name=f"{self.name}-log", daemon=True
        )
        self._reader.start()

    def _forward(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if not line:
                continue
            self.last_line = line
            self.log(f"{self.name}: {line}")
            if not self.ready.is_set() and self.probe(line):
                self.ready.set()

    def _join_reader(self) -> None:
        if self._reader is not None:
            self._reader.join(1)  # let its last words reach the log

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def poll(self) -> int | None:
        return self.proc.poll() if self.proc else None

    def wait_ready(self, timeout: float, stop: threading.Event | None = None) -> bool:
        """True once it is ready; False if it exited first, or on timeout or `stop`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
            if self.ready.wait(0.1):
                return True
            if self.poll() is not None:
                self._join_reader()
                return False
        return self.ready.is_set()

    def stop(self) -> int | None:
        """Stop it (SIGTERM, SIGKILL after `stop_timeout`); its exit code, None if never run."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            _signal_group(proc, kill=False)
            try:
                proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                _signal_group(proc, kill=True)
                proc.wait()
        self._join_reader()
        return proc.returncode


def _signal_group(proc: subprocess.Popen[bytes], kill: bool) -> None:
    if not POSIX:
        if kill:
            proc.kill()
        else:
            proc.terminate()
        return
    # The leader is not reaped yet (poll() said so), so its group id is still ours.
    sig = signal.SIGKILL if kill else signal.SIGTERM
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        proc.send_signal(sig)  # no group of its own after all: the child alone


class Backoff:
    """How long to wait before starting a child again: `first`, doubling up to `most`; after a
    run that lasted more than `stable` seconds, `first` again."""

    def __init__(self, first: float = 1.0, most: float = 60.0, stable: float = 60.0) -> None:
        self.first = first
        self.most = most
        self.stable = stable
        self.delay = first

    def next(self, started: float | None = None) -> float:
        """The delay to wait now; `started` is the monotonic start of the run that just ended
        (None: it never came up, so it does not count as stable)."""
        if started is not None and time.monotonic() - started > self.stable:
            self.delay = self.first
        delay = self.delay
        self.delay = min(delay * 2, self.most)
        return delay
