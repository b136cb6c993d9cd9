"""Saying "no space left" with where: the file system that is full, not only the file.

A full disk shows up as ENOSPC from our own writes, and as words in git's, rclone's and
SQLite's messages (all run with LC_ALL=C, or in English). Either way the person needs to know
which file system to free space on.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
FULL_TEXT = (
    "no space left on device",
    "out of diskspace",  # git, writing a pack
    "disk quota exceeded",
    "database or disk is full",  # SQLite
)


def is_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in FULL_ERRNOS


def mentions_full(text: str) -> bool:
    lowered = text.lower()
    return any(t in lowered for t in FULL_TEXT)


def mount_point(path: Path) -> Path:
    """The mount point of the file system holding `path` (or its nearest existing parent)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    device = path.stat().st_dev
    while path != path.parent and path.parent.stat().st_dev == device:
        path = path.parent
    return path


def free_bytes(path: Path) -> int | None:
    try:
        return shutil.disk_usage(mount_point(path)).free
    except OSError:
        return None


# Below this, a write that failed without saying why (SQLite's "disk I/O error") is taken as
# a full disk: a file system at 0 bytes still reports a few kB its own reserves hold.
NEARLY_FULL = 1 << 20


def is_nearly_full(path: Path) -> bool:
    free = free_bytes(path)
    return free is not None and free < NEARLY_FULL


def no_space(path: Path, doing: str) -> str:
    """One line: which file system is full, how much is free, and what could not be done."""
    where = mount_point(path)
    free = free_bytes(path)
    left = f"{free:,} bytes free" if free is not None else "free space unknown"
    return f"no space left on the file system at {where} ({left}) while {doing}"
