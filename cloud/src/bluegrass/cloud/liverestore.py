"""Putting a file or folder from a snapshot back into a segment's live tree, in place.

This is the web interface's "restore into my synced folder". The caller has snapshotted the
live tree first, so whatever is replaced or removed here is in history. Then:

1. the chosen path is restored, byte-exact, by core's restore into a staging folder,
   DATA/files/.bluegrass-restore/<random>/ (on the live trees' file system, so that step 2
   can rename);
2. the staged entries are moved into the live tree one by one: every file is renamed over
   its old version (atomic per file: a reader sees the old bytes or the new, never a mix);
   a folder becomes exactly what it was at that snapshot (entries added since are removed);
   a file standing where a folder must go (or the other way round) is replaced, which is the
   one step that is not atomic.

Every step works on open folder descriptors, from DATA/files/ down, with O_NOFOLLOW: a
symlink in the live tree on the way to the path is refused (it could lead out of the tree),
and one in the way of a restored entry is replaced, never followed.

What the sync endpoint needs (docs/design.md D2):
- a symlink from a snapshot is written as `NAME.rclonelink` holding its target, the way the
  endpoint stores a laptop's symlink: a laptop syncing with --links gets the link back, and a
  real symlink in the live tree would be hidden from devices (or, to a folder, stop the
  user's logins: decision 11);
- upload temp files (`NAME.<8 hex>.bluegrass-part`) of a laptop syncing right now are left
  alone, and so is the segment's `.bluegrass-check` when a whole segment is restored to a
  snapshot without one;
- the endpoint caches listings for only 100 ms (`--dir-cache-time`), so every device gets
  the restored files at its next sync.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import shutil
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bluegrass.cloud.datadir import Busy, DataRoot
from bluegrass.core import syncmeta, syncspec
from bluegrass.core.errors import BluegrassError
from bluegrass.core.store import Repository, restore
from bluegrass.core.store.browse import PathError, check_path
from bluegrass.core.store.manifest import ROOT, Entry

STAGING = ".bluegrass-restore"
LINK_SUFFIX = ".rclonelink"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20


class LiveRestoreError(BluegrassError):
    """The restore cannot be done as asked; nothing, or only whole files, changed."""


@dataclass
class LiveRestoreResult:
    files: int = 0  # files (and links) written
    folders: int = 0  # folders made or brought back
    removed: int = 0  # entries removed because the snapshot did not have them


def _kind(dir_fd: int, name: str) -> str | None:
    """'d', 'l', 'f' (anything else that is not a folder or link) or None if absent."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return "l"
    return "d" if stat.S_ISDIR(st.st_mode) else "f"


def _open_dir(dir_fd: int | None, name: str) -> int:
    return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)


def _remove(dir_fd: int, name: str) -> None:
    if _kind(dir_fd, name) == "d":
        # The descriptor-based rmtree: it never follows a symlink found inside.
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


@contextlib.contextmanager
def _writable(fd: int) -> Iterator[None]:
    """Let us (the folder's owner) write into a folder that may be read-only; then undo it."""
    mode = stat.S_IMODE(os.fstat(fd).st_mode)
    if mode & 0o300 != 0o300:
        os.fchmod(fd, mode | 0o700)
    try:
        yield
    finally:
        if mode & 0o300 != 0o300:
            os.fchmod(fd, mode)


class _Merge:
    def __init__(self, result: LiveRestoreResult) -> None:
        self.result = result

    def place_file(self, source: Path, dir_fd: int, name: str) -> None:
        """Rename the staged file `source` over `name` in the folder `dir_fd`."""
        if _kind(dir_fd, name) == "d":
            shutil.rmtree(name, dir_fd=dir_fd)
        try:
            os.replace(source, name, dst_dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            self._copy_in(source, dir_fd, name)  # the user's folder is another file system
        self.result.files += 1

    def _copy_in(self, source: Path, dir_fd: int, name: str) -> None:
        st = os.lstat(source)
        temp = f"{name}.{secrets.token_hex(4)}{syncspec.PARTIAL_SUFFIX}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(temp, flags, 0o600, dir_fd=dir_fd)
        try:
            with os.fdopen(fd, "wb", closefd=False) as out, source.open("rb") as src:
                shutil.copyfileobj(src, out, _CHUNK)
            os.fchmod(fd, stat.S_IMODE(st.st_mode))
            os.utime(fd, ns=(st.st_mtime_ns, st.st_mtime_ns))
        except BaseException:
            os.close(fd)
            os.unlink(temp, dir_fd=dir_fd)
            raise
        os.close(fd)
        os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)

    def place_link(self, source: Path, dir_fd: int, name: str) -> None:
        """A staged symlink becomes NAME.rclonelink holding its target (see the docstring)."""
        target = str(source.readlink())
        mtime = os.lstat(source).st_mtime_ns
        link_file = source.with_name(f".{source.name}.{secrets.token_hex(4)}{LINK_SUFFIX}")
        fd = os.open(link_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, os.fsencode(target))
            os.fchmod(fd, 0o644)
            os.utime(fd, ns=(mtime, mtime))
        finally:
            os.close(fd)
        self.place_file(link_file, dir_fd, name + LINK_SUFFIX)

    def ensure_dir(self, dir_fd: int, name: str) -> int:
        """An open descriptor of the real folder `name`, made (or put instead of a file)."""
        kind = _kind(dir_fd, name)
        if kind not in (None, "d"):
            os.unlink(name, dir_fd=dir_fd)  # a file or a link in the way: replaced
            kind = None
        if kind is None:
            os.mkdir(name, 0o700, dir_fd=dir_fd)
            self.result.folders += 1
        return _open_dir(dir_fd, name)

    def folder(self, source: Path, dest_fd: int, *, segment_root: bool = False) -> None:
        """Make the live folder `dest_fd` exactly the staged folder `source`."""
        st = os.lstat(source)
        source.chmod(0o700)  # so that its entries can be moved out of it
        wanted: dict[str, tuple[str, Path]] = {}
        for entry in sorted(os.scandir(source), key=lambda e: e.name):
            path = Path(entry.path)
            if entry.is_symlink():
                wanted.setdefault(entry.name + LINK_SUFFIX, ("l", path))
            elif entry.is_dir():
                wanted[entry.name] = ("d", path)
            else:
                wanted[entry.name] = ("f", path)  # a real file wins over a link's stand-in
        with _writable(dest_fd):
            for name in sorted(os.listdir(dest_fd)):
                if name in wanted or syncspec.is_partial_upload(os.fsencode(name)):
                    continue
                if segment_root and syncmeta.is_internal(os.fsencode(name)):
                    continue  # the check file and the devices' sidecars stay
                _remove(dest_fd, name)
                self.result.removed += 1
            for name, (kind, path) in wanted.items():
                if kind == "d":
                    child = self.ensure_dir(dest_fd, name)
                    try:
                        self.folder(path, child)
                    finally:
                        os.close(child)
                elif kind == "l":
                    self.place_link(path, dest_fd, name[: -len(LINK_SUFFIX)])
                else:
                    self.place_file(path, dest_fd, name)
        os.fchmod(dest_fd, stat.S_IMODE(st.st_mode))
        os.utime(dest_fd, ns=(st.st_mtime_ns, st.st_mtime_ns))


@contextlib.contextmanager
def _segment_lock(root: DataRoot, user: str, segment: str) -> Iterator[None]:
    folder = root.path / "locks"
    folder.mkdir(exist_ok=True)
    with (folder / f"{user}.{segment}.restore.lock").open("a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Busy(f"another restore into {user}/{segment} is running; try again") from None
        yield


def restore_live(
    root: DataRoot, repo: Repository, user: str, segment: str, commit: str, path: bytes
) -> LiveRestoreResult:
    """Replace `path` (ROOT for the whole segment) in the live tree with its version at
    `commit`. The caller snapshots the live tree first and holds the user's lock."""
    path, entries, entry = _find(repo, commit, path)
    parts = [] if path == ROOT else [os.fsdecode(p) for p in path.split(b"/")]
    staging_base = root.files / STAGING
    staging_base.mkdir(mode=0o700, exist_ok=True)
    staged = staging_base / secrets.token_hex(8)
    result = LiveRestoreResult()
    merge = _Merge(result)
    with _segment_lock(root, user, segment):
        try:
            restore(repo, staged, at=commit, path=None if path == ROOT else os.fsdecode(path))
            fds: list[int] = []
            try:
                _open_segment(fds, root, user, segment)
                made = _open_parents(fds, merge, parts)
                _place(merge, staged, fds[-1], parts, entry)
                _set_made_folders(made, entries)
            finally:
                for fd in fds:
                    os.close(fd)
            _record_for_devices(root.live_tree(user, segment), entries, path)
        except OSError as exc:
            raise LiveRestoreError(f"restoring into the synced folder failed: {exc}") from exc
        finally:
            shutil.rmtree(staged, ignore_errors=True)
            _rmtree_unreadable(staged)
    return result


def _find(repo: Repository, commit: str, path: bytes) -> tuple[bytes, dict[bytes, Entry], Entry]:
    """The checked path, the snapshot's manifest and the path's entry in it."""
    try:
        path = check_path(path)
    except PathError as exc:
        raise LiveRestoreError(f"not a path inside the segment: {exc}") from None
    entries = repo.manifest(commit)
    entry = entries.get(path)
    if entry is None:
        raise LiveRestoreError(f"{os.fsdecode(path)} is not in that snapshot")
    return path, entries, entry


def _open_segment(fds: list[int], root: DataRoot, user: str, segment: str) -> None:
    """Open DATA/files, the user's folder and the segment's onto `fds`: every later step works
    through these descriptors, so a folder swapped for a link meanwhile is never followed."""
    fds.append(_open_dir(None, str(root.files)))
    for name in (user, segment):
        if _kind(fds[-1], name) != "d":
            raise LiveRestoreError(f"the synced folder {user}/{segment} is missing or not a folder")
        fds.append(_open_dir(fds[-1], name))


def _open_parents(fds: list[int], merge: _Merge, parts: list[str]) -> list[tuple[int, bytes]]:
    """Open (making them if needed) the folders above the restored path onto `fds`; the
    (descriptor, manifest path) of those this restore made."""
    made: list[tuple[int, bytes]] = []
    for i, name in enumerate(parts[:-1]):
        kind = _kind(fds[-1], name)
        if kind == "l":
            shown = "/".join(parts[: i + 1])
            raise LiveRestoreError(
                f"{shown} is a symbolic link in the synced folder; a restore does "
                "not write through one (an administrator can remove it)"
            )
        with _writable(fds[-1]):
            child = merge.ensure_dir(fds[-1], name)
        fds.append(child)
        if kind != "d":
            made.append((child, os.fsencode("/".join(parts[: i + 1]))))
    return made


def _place(merge: _Merge, staged: Path, parent: int, parts: list[str], entry: Entry) -> None:
    """Put the staged version in place under `parent`: the whole segment, a folder, a link or
    a file."""
    if not parts:
        merge.folder(staged, parent, segment_root=True)
        return
    last = parts[-1]
    with _writable(parent):
        if entry.kind == "d":
            child = merge.ensure_dir(parent, last)
            try:
                merge.folder(staged, child)
            finally:
                os.close(child)
        elif entry.kind == "l":
            merge.place_link(staged / last, parent, last)
            if _kind(parent, last) is not None:
                # What stands under the link's own name now (a real link, a
                # file) would clash with the link a laptop makes from it.
                _remove(parent, last)
        else:
            merge.place_file(staged / last, parent, last)


def _set_made_folders(made: list[tuple[int, bytes]], entries: dict[bytes, Entry]) -> None:
    # Folders this restore had to make on the way get their recorded mode and time.
    for fd, rel in reversed(made):
        recorded = entries.get(rel)
        if recorded is not None and recorded.kind == "d":
            os.fchmod(fd, recorded.mode)
            os.utime(fd, ns=(recorded.mtime_ns, recorded.mtime_ns))


def _record_for_devices(live: Path, entries: dict[bytes, Entry], path: bytes) -> None:
    """The restored entries' bits and times, in the cloud's own sidecar: the sync endpoint
    passes neither to devices, which take them from there (decision 59)."""
    folder = live / os.fsdecode(syncmeta.FOLDER)
    if folder.is_symlink():
        raise LiveRestoreError(f"{folder} is a symbolic link; an administrator can remove it")
    own = folder / f"{syncmeta.CLOUD_SOURCE}{syncmeta.SUFFIX}"
    records = syncmeta.read(own)
    now = time.time_ns()
    prefix = b"" if path == ROOT else path + b"/"
    for rel, entry in entries.items():
        if (rel == path or rel.startswith(prefix)) and syncmeta.is_described(rel):
            records[rel] = syncmeta.Record(entry.kind, entry.mode, entry.mtime_ns, entry.size, now)
    syncmeta.write(own, records)


def _rmtree_unreadable(staged: Path) -> None:
    """What rmtree could not remove because a staged folder was read-only: try again."""
    if not staged.exists():
        return
    for folder, dirs, _ in os.walk(staged):
        for name in dirs:
            with contextlib.suppress(OSError):
                (Path(folder) / name).chmod(0o700)
    shutil.rmtree(staged, ignore_errors=True)
