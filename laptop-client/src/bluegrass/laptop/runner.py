"""Running the pinned rclone: argument lists only, a clean environment, JSON logs, signals.

- The binary is the one Bluegrass pins (bluegrass.core.rclone), never one found on PATH.
- The environment loses every RCLONE_* variable: rclone reads any flag and any remote's
  settings from the environment (RCLONE_INPLACE, RCLONE_CONFIG_BLUEGRASS_HOST, ...), and a
  stray one could undo a safety flag or point the sync elsewhere. What a sync does is decided
  by the configuration file and by these arguments alone.
- Long runs (bisync) log as JSON lines on one pipe; each line is parsed into a LogRecord, the
  periodic stats go to a callback (the progress display), and everything is kept in a log file.
- rclone runs in a process group of its own, so a Ctrl-C in the terminal or a service
  manager's SIGTERM reaches it exactly once, from us: rclone treats the first signal as "finish
  gracefully" and a second one as "stop now".
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from bluegrass.core import rclone
from bluegrass.core.errors import BluegrassError

# Connecting to an unreachable laptop-to-cloud link should fail in seconds, not minutes.
BASE_FLAGS = ["--color", "NEVER", "--contimeout", "20s", "--low-level-retries", "3"]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.upper().startswith("RCLONE_")}


@dataclass(frozen=True)
class LogRecord:
    level: str
    msg: str
    object: str = ""
    stats: dict[str, Any] | None = None


@dataclass
class RunResult:
    code: int
    records: list[LogRecord] = field(default_factory=list)
    stats: dict[str, Any] | None = None
    signalled: bool = False

    def messages(self, *levels: str) -> list[str]:
        return [r.msg for r in self.records if not levels or r.level in levels]

    def find(self, needle: str) -> LogRecord | None:
        for record in self.records:
            if needle in record.msg:
                return record
        return None


def parse_line(line: str) -> LogRecord:
    line = line.rstrip("\r\n")
    try:
        data = json.loads(line)
    except ValueError:
        data = None
    if not isinstance(data, dict) or "msg" not in data:
        return LogRecord("raw", line)
    obj = data.get("object")
    stats = data.get("stats") if isinstance(data.get("stats"), dict) else None
    return LogRecord(
        str(data.get("level", "")), str(data["msg"]), "" if obj is None else str(obj), stats
    )


class Interrupts:
    """While active, SIGINT/SIGTERM (and SIGBREAK on Windows) ask the work to stop.

    The first signal is passed on to the running rclone, which then finishes its transfers
    and saves its state; later signals are passed on too (rclone then stops at once).
    """

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.child: subprocess.Popen[str] | None = None
        self._saved: dict[int, Any] = {}

    def __enter__(self) -> Interrupts:
        names = ["SIGINT", "SIGTERM", "SIGBREAK"]
        for name in names:
            signum = getattr(signal, name, None)
            if signum is None:
                continue
            try:
                self._saved[signum] = signal.signal(signum, self._handle)
            except (ValueError, OSError):  # not the main thread, or not supported here
                pass
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.requested.set()
        child = self.child
        if child is not None and child.poll() is None:
            stop_gracefully(child)


def stop_gracefully(proc: subprocess.Popen[str]) -> None:
    try:
        if sys.platform == "win32":
            proc.send_signal(signal.CTRL_BREAK_EVENT)  # Go maps it to os.Interrupt
        else:
            proc.send_signal(signal.SIGTERM)
    except (ProcessLookupError, OSError):
        pass


class Rclone:
    def __init__(self, config_file: Path, cache_dir: Path, bwlimit: str = "") -> None:
        self.binary = rclone.binary()
        self.config_file = config_file
        self.cache_dir = cache_dir
        self.bwlimit = bwlimit

    def command(self, args: Sequence[str]) -> list[str]:
        cmd = [str(self.binary), "--config", str(self.config_file)]
        cmd += ["--cache-dir", str(self.cache_dir), *BASE_FLAGS]
        if self.bwlimit:
            cmd += ["--bwlimit", self.bwlimit]
        return cmd + list(args)

    def run(
        self, args: Sequence[str], *, stdin: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """A short rclone command; its output is returned, not shown."""
        try:
            return subprocess.run(
                self.command(args),
                input=stdin,
                capture_output=True,
                text=True,
                encoding="utf-8",
                errors="replace",
                env=clean_env(),
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise BluegrassError(f"rclone {args[0]} took longer than {timeout:.0f} s") from exc

    def head(self, remote_file: str, count: int, *, timeout: float = 60) -> bytes | None:
        """The first `count` bytes of one file on a remote (`rclone cat`), or None."""
        try:
            proc = subprocess.run(
                self.command(["cat", "--count", str(count), remote_file]),
                capture_output=True,
                env=clean_env(),
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return None
        return proc.stdout if proc.returncode == 0 else None

    def run_logged(
        self,
        args: Sequence[str],
        *,
        log_file: Path,
        interrupts: Interrupts | None = None,
        on_record: Callable[[LogRecord], None] | None = None,
    ) -> RunResult:
        """A long rclone command logging JSON lines (`--use-json-log`), followed as it runs."""
        creation = {}
        if sys.platform == "win32":
            creation["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
        else:
            creation["start_new_session"] = True
        log_file.parent.mkdir(parents=True, exist_ok=True)
        result = RunResult(code=-1)
        with log_file.open("w", encoding="utf-8") as log:
            proc = subprocess.Popen(
                self.command(args),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                encoding="utf-8",
                errors="replace",
                env=clean_env(),
                **creation,
            )
            if interrupts is not None:
                interrupts.child = proc
                if interrupts.requested.is_set():
                    stop_gracefully(proc)
            try:
                assert proc.stdout is not None
                for line in proc.stdout:
                    log.write(line)
                    record = parse_line(line)
                    result.records.append(record)
                    if record.stats is not None:
                        result.stats = record.stats
                    if on_record is not None:
                        on_record(record)
                result.code = proc.wait()
            finally:
                if proc.poll() is None:  # we are being torn down: do not leave rclone behind
                    stop_gracefully(proc)
                    try:
                        proc.wait(timeout=100)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                if interrupts is not None:
                    interrupts.child = None
                    result.signalled = interrupts.requested.is_set()
        return result
