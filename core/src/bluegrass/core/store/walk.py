"""Walking a user's tree: every entry's kind, mode, mtime and size, without following links.

Paths are bytes throughout: a file name need not be valid UTF-8, and it is stored exactly.
Nothing here opens a file for writing or changes anything under the root.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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


def walk(root: bytes, skip: Callable[[bytes], str | None] | None = None) -> Walk:
    """Walk `root` (an existing directory) and return every entry keyed by relative path.

    `skip(name)` may return a reason to leave an entry out (an upload still in flight); such
    entries are reported in `skipped`, never dropped in silence.
    """
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
            if skip is not None and (reason := skip(item.name)):
                result.skipped.append((rel, reason))
                continue
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


# One record per entry: type, permission bits, mtime and ctime (ns precision), size, inode,
# device, path, and link target. Equal listings mean equal stat data for every entry.
_GROUPS = 4
_FIND_FORMAT = "%y %m %T@ %C@ %s %i %D %p\\0%l\\0"


def fingerprint(root: bytes, workers: int | None = None) -> bytes | None:
    """A digest of every entry's stat data under `root`, or None if it cannot be had.

    GNU find does the stat calls in C, several processes at once over the top-level entries,
    which is what lets a no-change check of a large tree finish in a fraction of a second.
    Only an exact match with the previous digest is trusted; anything else (no GNU find, an
    unreadable folder, any error) falls back to the full walk.
    """
    find = shutil.which("find")
    if find is None:
        return None
    try:
        top = sorted(os.listdir(root))
        root_stat = os.lstat(root)
    except OSError:
        return None
    workers = max(1, min(workers or os.cpu_count() or 1, _GROUPS))
    # A fixed grouping, whatever the number of cores, so the digest does not depend on it.
    groups = [top[i::_GROUPS] for i in range(_GROUPS) if top[i::_GROUPS]]

    def scan(names: list[bytes]) -> bytes | None:
        # Starting points go through stdin (-files0-from): a folder with 100k entries would
        # not fit on a command line.
        paths = b"".join(root + b"/" + n + b"\0" for n in names)
        try:
            proc = subprocess.run(
                [find, "-files0-from", "-", "-printf", _FIND_FORMAT],
                input=paths,
                capture_output=True,
                env={"LC_ALL": "C", "PATH": os.environ.get("PATH", "")},
            )
        except OSError:
            return None
        return proc.stdout if proc.returncode == 0 and not proc.stderr else None

    digest = hashlib.sha1(usedforsecurity=False)
    digest.update(
        b"%d %d %d %d\0"
        % (root_stat.st_mode, root_stat.st_mtime_ns, root_stat.st_ctime_ns, root_stat.st_ino)
    )
    with ThreadPoolExecutor(workers) as pool:
        for out in pool.map(scan, groups):
            if out is None:
                return None
            digest.update(out)
    return digest.digest()
