"""A secret kept in a file of its own: made once, owner-only, the same for every process.

Session signing keys and one-time codes are read by several processes (gunicorn's workers, the
command line) that may start at the same moment. The file is written whole under a temporary
name (0600, flushed) and hard-linked into place: the first link wins, the others read the
winner's, and nobody ever reads a half-written file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def read_or_create(path: Path, make: str) -> str:
    """The secret in `path` (stripped), writing `make` there first if there is none."""
    if not path.exists():
        temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(temp, flags, 0o600)
        try:
            os.write(fd, (make + "\n").encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temp, path)
        except FileExistsError:
            pass  # another process was first: its secret stands
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
    return path.read_text(encoding="utf-8").strip()
