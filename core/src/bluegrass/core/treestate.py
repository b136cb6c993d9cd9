"""A folder tree's state in one hash: has anything in it changed since we last looked?

The laptop asks this of its segment folder and the cloud of the same segment's live folder
before a sync: when neither side's state moved since a sync that found nothing to do, the
sync has nothing to do either, and rclone bisync (3+ s on 78k files, most of it listing the
remote over sftp) is skipped (docs/decisions.md 56).

The hash covers every entry under the root, whatever the sync's filters say (a superset: an
excluded file that changes costs one unneeded sync, never a missed one): its path, type and
permission bits, size, modification time, inode and, where the system keeps one, its status
change time (ctime). ctime is the part that makes the hash trustworthy: nothing but the kernel
sets it, every write, rename, delete (of a folder's entries), chmod or utime moves it to "now",
so a file edited and given its old modification time back still changes the hash.

Timestamps are coarse (a kernel tick, or worse on some file systems), so an entry changed in
the same tick as the walk read it could change again without moving its times. A walk that
saw any entry changed within RACY_SECONDS of it is "racy": good for comparing, never kept as
the state to compare with (the same rule as git's racy index entries).
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

RACY_SECONDS = 2.0
# On Windows st_ctime is the creation time, which edits do not move: the modification time is
# the best the system gives there.
_CHANGE_FIELD = "st_mtime_ns" if sys.platform == "win32" else "st_ctime_ns"


@dataclass(frozen=True)
class TreeState:
    digest: str  # hex BLAKE2b-256 of every entry's path and stat fields, in sorted order
    entries: int
    racy: bool  # an entry changed within RACY_SECONDS of the walk: do not keep this state

    def to_json(self) -> dict[str, object]:
        return {"digest": self.digest, "entries": self.entries, "racy": self.racy}

    @classmethod
    def from_json(cls, data: object) -> TreeState | None:
        if not isinstance(data, dict):
            return None
        digest, entries, racy = data.get("digest"), data.get("entries"), data.get("racy")
        if not (isinstance(digest, str) and len(digest) == 64 and isinstance(entries, int)):
            return None
        if not isinstance(racy, bool):
            return None
        return cls(digest, entries, racy)


def walk(root: Path, renamed_only: Callable[[bytes], bool] | None = None) -> TreeState:
    """The state of the tree under `root` (which must be a folder; symlinks are not followed).

    `renamed_only(path)` may say that an entry (a relative path) is only ever replaced by a
    rename, never written in place: a change to it is a new inode, which the hash holds, so a
    change within the racy window cannot hide and it never makes the walk racy. (The cloud's
    sidecars: a device that has just uploaded its own asks for the state at once.)

    Raises OSError if the root cannot be read; an entry that vanishes during the walk is
    recorded as vanished (the next walk will differ), one that cannot be read stops the walk.
    """
    started = time.time_ns()
    digest = hashlib.blake2b(digest_size=32)
    margin = int(RACY_SECONDS * 1e9)
    recent: list[int] = []  # change times from RACY_SECONDS before the walk on
    count = 0
    top = os.fspath(root)
    # The root's own times move when an entry is added to or removed from it.
    _add(digest, b"", os.lstat(top), started - margin, recent)
    pending = [(top, b"")]
    while pending:
        folder, prefix = pending.pop()
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            name = prefix + os.fsencode(entry.name)
            try:
                info = os.lstat(entry.path)  # DirEntry.stat() lacks st_ino/st_ctime on Windows
            except FileNotFoundError:
                digest.update(name + b"\0vanished\n")
                recent.append(time.time_ns())
                continue
            exempt = renamed_only is not None and renamed_only(name)
            _add(digest, name, info, started - margin, [] if exempt else recent)
            count += 1
            if stat.S_ISDIR(info.st_mode):
                pending.append((entry.path, name + b"/"))
    # A time beyond the walk's end is not "now" (a clock ahead on the machine that set it):
    # the next change moves it back to now, so it cannot hide one.
    until = time.time_ns() + margin
    racy = any(t <= until for t in recent)
    return TreeState(digest.hexdigest(), count, racy)


def _add(
    digest: hashlib._Hash, name: bytes, info: os.stat_result, since: int, recent: list[int]
) -> None:
    changed = getattr(info, _CHANGE_FIELD)
    digest.update(
        b"%s\0%o %d %d %d %d\n"
        % (name, info.st_mode, info.st_size, info.st_mtime_ns, info.st_ino, changed)
    )
    if changed >= since:
        recent.append(changed)
