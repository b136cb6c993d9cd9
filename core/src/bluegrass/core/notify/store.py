"""The notifications' state, one small file in the role's state folder:

    notify/state.json    the problems that last (since when, last said when) and the outbox
                         (messages and pings not yet delivered), 0600: it holds their URLs
    notify/state.lock    held while state.json is read, changed and written back
    notify/sender.lock   held by the one process delivering the outbox (notify.deliver)
    notify/notify.log    what each delivery did, URLs masked

Several processes change it (the cloud's `run` threads, a command typed by hand, the delivery
child): each change takes the lock, reads the file, changes it and writes it back through a
temporary file and a rename, so none is lost and none is seen half written.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

VERSION = 1
LOG_LIMIT = 256 * 1024  # notify.log is cut to its newer half past this size


class Folder:
    def __init__(self, root: Path) -> None:
        self.path = root / "notify"

    @property
    def state(self) -> Path:
        return self.path / "state.json"

    @property
    def lock(self) -> Path:
        return self.path / "state.lock"

    @property
    def sender_lock(self) -> Path:
        return self.path / "sender.lock"

    @property
    def log(self) -> Path:
        return self.path / "notify.log"

    def ensure(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)

    @contextlib.contextmanager
    def changing(self) -> Iterator[dict[str, Any]]:
        """The state, locked; what the block leaves in it is written back."""
        self.ensure()
        with hold(self.lock, wait=True):
            state = self.read()
            yield state
            _write_atomic(self.state, json.dumps(state, indent=1, sort_keys=True))

    def read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.state.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        if not isinstance(data, dict) or data.get("version") != VERSION:
            data = {}
        data.setdefault("version", VERSION)
        data.setdefault("problems", {})
        data.setdefault("outbox", [])
        return data

    def append_log(self, line: str) -> None:
        self.ensure()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        try:
            if self.log.stat().st_size > LOG_LIMIT:
                text = self.log.read_text(encoding="utf-8", errors="replace")
                _write_atomic(self.log, text[len(text) // 2 :])
        except OSError:
            pass
        with self.log.open("a", encoding="utf-8") as fh:
            fh.write(f"{stamp} {line}\n")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class Held(Exception):
    """Another process holds the lock (only when not waiting)."""


@contextlib.contextmanager
def hold(path: Path, *, wait: bool) -> Iterator[None]:
    """An OS lock on `path`, dropped by the kernel when its holder dies (never stale)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        _lock(fd, wait)
        try:
            yield
        finally:
            _unlock(fd)
    finally:
        os.close(fd)


if sys.platform == "win32":
    import msvcrt

    def _lock(fd: int, wait: bool) -> None:
        deadline = time.monotonic() + 30.0
        while True:
            os.lseek(fd, 0, os.SEEK_SET)
            try:
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
                return
            except OSError:
                if not wait or time.monotonic() > deadline:
                    raise Held(str(fd)) from None
                time.sleep(0.05)

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock(fd: int, wait: bool) -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Held(str(fd)) from None

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
