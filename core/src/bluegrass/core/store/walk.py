"""Walking a user's tree: every entry's kind, mode, mtime and size, without following links.

Paths are bytes throughout: a file name need not be valid UTF-8, and it is stored exactly.
Nothing here opens a file for writing or changes anything under the root.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field


@dataclass(slots=True)
class Stat:
    """What the walk saw of one entry; the stat cache compares these between snapshots."""

    kind: str  # "f", "l" or "d"
    mode: int
    mtime_ns: int
    ctime_ns: int
    size: int
    ino: int
    link_target: bytes | None = None


@dataclass
class Walk:
    entries: dict[bytes, Stat] = field(default_factory=dict)
    # (path, reason) for what cannot be backed up: sockets, FIFOs, devices.
    skipped: list[tuple[bytes, str]] = field(default_factory=list)
    # (path, reason) for what could not be read; the previous version is kept.
    unreadable: list[tuple[bytes, str]] = field(default_factory=list)


_SPECIAL = {
    stat.S_IFSOCK: "socket",
    stat.S_IFIFO: "FIFO",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
}


def stat_entry(st: os.stat_result) -> Stat | None:
    fmt = stat.S_IFMT(st.st_mode)
    if fmt == stat.S_IFREG:
        kind = "f"
    elif fmt == stat.S_IFDIR:
        kind = "d"
    elif fmt == stat.S_IFLNK:
        kind = "l"
    else:
        return None
    return Stat(
        kind, stat.S_IMODE(st.st_mode), st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino
    )


def walk(root: bytes) -> Walk:
    """Walk `root` (an existing directory) and return every entry keyed by relative path."""
    result = Walk()
    root_stat = stat_entry(os.lstat(root))
    if root_stat is None or root_stat.kind != "d":
        raise NotADirectoryError(os.fsdecode(root))
    result.entries[b"."] = root_stat
    stack: list[tuple[bytes, bytes]] = [(root, b"")]
    while stack:
        abs_dir, rel_dir = stack.pop()
        try:
            with os.scandir(abs_dir) as it:
                listing = list(it)
        except OSError as exc:
            result.unreadable.append((rel_dir or b".", exc.strerror or str(exc)))
            continue
        for item in listing:
            rel = rel_dir + b"/" + item.name if rel_dir else item.name
            try:
                st = item.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed while we walked: it is simply not in this snapshot
            except OSError as exc:
                result.unreadable.append((rel, exc.strerror or str(exc)))
                continue
            entry = stat_entry(st)
            if entry is None:
                result.skipped.append((rel, _SPECIAL.get(stat.S_IFMT(st.st_mode), "special file")))
                continue
            if entry.kind == "l":
                try:
                    entry.link_target = os.readlink(item.path)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    result.unreadable.append((rel, exc.strerror or str(exc)))
                    continue
            elif entry.kind == "d":
                stack.append((item.path, rel))
            result.entries[rel] = entry
    return result
