"""What rclone over sftp cannot carry, carried beside the files: the metadata sidecars.

rclone's sftp backend keeps no permission bits, keeps modification times to the whole second
in 32 bits (a year-2200 time arrives as 2063), and sends a symlink as a small file
`NAME.rclonelink` holding its target. So each device writes, at the root of every segment it
syncs, one sidecar `.bluegrass-meta/<device>.meta` listing every entry of its folder with its
kind, permission bits and nanosecond mtime. rclone bisync carries the sidecars like any file;
the cloud reads them when it takes a snapshot (`adjust_snapshot`), and laptops and the Pi read
them after a sync to put the bits and times back (`apply`). Nothing here ever follows a
symlink or touches a path outside the segment.

A record describes *one state* of an entry: it applies to the entry at the same path only if
the kinds agree and, for files and links, the size is the same and the mtime is the same whole
second modulo 2**32 (what sftp kept of it). A stale record (the file was edited since on
another device) therefore never lands on new content. Each record also says when its device
saw that state appear (`changed_ns`); where several devices' records apply, the latest
change wins. A device keeps a record's `changed_ns` while the entry stays as recorded, and
takes over the winner's when it applies another device's record, so a device never claims an
old state as a new change.

Format (gzip-compressed; paths are raw bytes relative to the segment, "/"-separated):

    "bluegrass-meta 1" NUL
    KIND SP MODE SP MTIME_NS SP SIZE SP CHANGED_NS TAB PATH NUL     one per entry, sorted

KIND is f, l or d; MODE is octal permission bits, or "-" from a device that has none
(Windows: the stored bits are then left as they are); setuid and setgid are never carried.
"""

from __future__ import annotations

import gzip
import os
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from bluegrass.core import syncspec
from bluegrass.core.store.manifest import Entry, valid_path
from bluegrass.core.store.walk import Stat, Walk, walk

FOLDER = b".bluegrass-meta"
SUFFIX = ".meta"
CLOUD_SOURCE = "cloud"  # the cloud's own sidecar: what a restore into the live tree wrote
LINK_SUFFIX = b".rclonelink"
HEADER = b"bluegrass-meta 1"
# Permission bits a device may set anywhere else: never setuid or setgid, which a restore as
# root (the Pi, a server) would turn into a way to run as someone else.
MODE_BITS = 0o1777
SFTP_SECONDS = 1 << 32  # sftp v3 carries times as unsigned 32-bit seconds
MAX_SIDECAR = 512 << 20  # decompressed; far above 78k entries (~6 MB), far below a gzip bomb
MAX_LINK = 4096  # PATH_MAX: a longer .rclonelink is no link rclone wrote
_INTERNAL = (FOLDER, syncspec.CHECK_FILENAME.encode())


class SidecarError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Record:
    kind: str  # "f", "l" or "d"
    mode: int | None  # None: the device has no POSIX permission bits
    mtime_ns: int
    size: int
    changed_ns: int

    def describes(self, kind: str, size: int, mtime_ns: int) -> bool:
        """Whether this record is about the entry as it is (kind, size, sftp's second)."""
        if kind != self.kind:
            return False
        return kind == "d" or (size == self.size and same_second(mtime_ns, self.mtime_ns))

    def same_state(self, other: Record) -> bool:
        return (self.kind, self.mode, self.mtime_ns, self.size) == (
            other.kind,
            other.mode,
            other.mtime_ns,
            other.size,
        )


def same_second(a_ns: int, b_ns: int) -> bool:
    return (a_ns // 1_000_000_000) % SFTP_SECONDS == (b_ns // 1_000_000_000) % SFTP_SECONDS


def is_internal(path: bytes) -> bool:
    """The check file and the sidecars at a segment's root: the sync's, never the user's."""
    top = path.split(b"/", 1)[0]
    return top in _INTERNAL and (top == FOLDER or path == top)


def is_described(path: bytes) -> bool:
    """Whether a sidecar speaks for this entry: not the sync's own files, and not the
    segment's folder itself, which is each computer's own (its bits and time are where the
    person put the folder, and its time moves with every sync that writes into it)."""
    return path != b"." and not is_internal(path)


# -- the file format -----------------------------------------------------------------------


def serialize(records: dict[bytes, Record]) -> bytes:
    parts = [HEADER, b"\0"]
    for path in sorted(records):
        r = records[path]
        mode = b"-" if r.mode is None else b"%o" % r.mode
        parts.append(
            b"%s %s %d %d %d\t%s\0"
            % (r.kind.encode(), mode, r.mtime_ns, r.size, r.changed_ns, path)
        )
    # mtime=0: the same records always give the same bytes, so an unchanged folder never
    # rewrites its sidecar (which would make every sync look like a change).
    return gzip.compress(b"".join(parts), compresslevel=6, mtime=0)


def parse(data: bytes) -> dict[bytes, Record]:
    try:
        raw = _gunzip(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise SidecarError(f"not gzip data ({exc})") from None
    records = raw.split(b"\0")
    if not records or records[0] != HEADER or records[-1] != b"":
        raise SidecarError("not a Bluegrass metadata file, version 1")
    out: dict[bytes, Record] = {}
    for line in records[1:-1]:
        try:
            fields, path = line.split(b"\t", 1)
            kind, mode, mtime_ns, size, changed_ns = fields.split(b" ")
            record = Record(
                kind=kind.decode(),
                mode=None if mode == b"-" else int(mode, 8) & MODE_BITS,
                mtime_ns=int(mtime_ns),
                size=int(size),
                changed_ns=int(changed_ns),
            )
        except ValueError:
            raise SidecarError(f"malformed record {line[:80]!r}") from None
        if record.kind not in ("f", "l", "d") or record.size < 0 or not valid_path(path):
            raise SidecarError(f"malformed record {line[:80]!r}")
        out[path] = record
    return out


def _gunzip(data: bytes) -> bytes:
    inflate = zlib.decompressobj(wbits=31)  # gzip framing
    raw = inflate.decompress(data, MAX_SIDECAR)
    if inflate.unconsumed_tail:
        raise OSError(f"larger than {MAX_SIDECAR >> 20} MiB once decompressed")
    if not inflate.eof:
        raise EOFError("truncated")
    return raw


def read(path: Path) -> dict[bytes, Record]:
    """The records a sidecar file holds; none if it is missing or damaged (a writer then
    describes afresh)."""
    try:
        return parse(path.read_bytes())
    except (OSError, SidecarError):
        return {}


def write(path: Path, records: dict[bytes, Record]) -> bool:
    """Write `records` to `path` unless it already holds exactly them; True if written."""
    return write_data(path, serialize(records))


def write_data(path: Path, data: bytes) -> bool:
    """Write serialized records to `path` unless it already holds them; True if written."""
    try:
        if path.read_bytes() == data:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return True


# -- reading every device's sidecar --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Resolved:
    mode: int | None
    mtime_ns: int | None
    source: str
    changed_ns: int


@dataclass
class Sidecars:
    """Every device's records for one segment, by device (the file name without `.meta`)."""

    tables: dict[str, dict[bytes, Record]] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (file, why it was not read)

    @classmethod
    def read(cls, folder: Path) -> Sidecars:
        found = cls()
        try:
            names = sorted(p for p in folder.iterdir() if p.name.endswith(SUFFIX))
        except OSError:
            return found  # no sidecars yet: nothing to apply
        for path in names:
            source = path.name[: -len(SUFFIX)]
            if path.is_symlink() or not path.is_file():
                found.problems.append((path.name, "not a regular file"))
                continue
            try:
                found.tables[source] = parse(path.read_bytes())
            except (OSError, SidecarError) as exc:
                found.problems.append((path.name, str(exc)))
        return found

    def resolve(self, path: bytes, kind: str, size: int, mtime_ns: int) -> Resolved | None:
        """The bits and time for the entry at `path` as it is, from the latest change that
        describes it; None if no device's record does."""
        candidates = sorted(
            (
                (r.changed_ns, source, r)
                for source, table in self.tables.items()
                if (r := table.get(path)) is not None and r.describes(kind, size, mtime_ns)
            ),
            key=lambda c: (c[0], c[1]),
            reverse=True,
        )
        if not candidates:
            return None
        changed_ns, source, best = candidates[0]
        # A device without permission bits leaves the ones another device recorded.
        mode = next((r.mode for _, _, r in candidates if r.mode is not None), None)
        return Resolved(mode, _finest(best.mtime_ns, candidates, mtime_ns), source, changed_ns)


def _finest(mtime_ns: int, candidates: list[tuple[int, str, Record]], live_ns: int) -> int:
    """A whole-second time is what sftp left of a finer one: a device that got a file with no
    record of it (from an older client, or written on the cloud) describes it to the second.
    Where another record or the entry itself has a finer time in that second, it is the real
    one; a whole second must never overwrite it."""
    if mtime_ns % 1_000_000_000:
        return mtime_ns
    for other in [r.mtime_ns for _, _, r in candidates] + [live_ns]:
        if other % 1_000_000_000 and same_second(other, mtime_ns):
            return other
    return mtime_ns


# -- a device describing its own folder ----------------------------------------------------


def has_modes() -> bool:
    return sys.platform != "win32"


def describe(root: Path, previous: dict[bytes, Record], now_ns: int) -> dict[bytes, Record]:
    """Records for every entry under `root` (a device's segment folder) as it is now.

    An entry recorded in `previous` in the same state keeps its `changed_ns`; anything new or
    different changed when its inode last changed (ctime: a chmod, a write, a copy), never
    later than `now_ns`. Not "now": a laptop joining with an old copy of a file must not
    claim that copy's bits as newer than another device's recent chmod.
    """
    seen = walk(os.fsencode(root.absolute()))
    modes = has_modes()
    out: dict[bytes, Record] = {}
    for rel, st in seen.entries.items():
        if not is_described(rel) or syncspec.is_partial_upload(rel.rsplit(b"/", 1)[-1]):
            continue
        record = Record(st.kind, st.mode & MODE_BITS if modes else None, st.mtime_ns, st.size, 0)
        before = previous.get(rel)
        if before is not None and before.same_state(record):
            changed = before.changed_ns
        else:
            changed = min(now_ns, max(st.ctime_ns, st.mtime_ns))
        out[rel] = Record(record.kind, record.mode, record.mtime_ns, record.size, changed)
    return out


# -- a device or the Pi putting bits and times back ----------------------------------------


@dataclass
class Applied:
    entries: int = 0  # entries whose bits or time were set
    adopted: dict[bytes, Record] = field(default_factory=dict)  # for the device's own sidecar
    failed: list[tuple[str, str]] = field(default_factory=list)


def apply(root: Path, sidecars: Sidecars, own: str | None = None) -> Applied:
    """Give every entry under `root` the bits and nanosecond time its latest record says.

    `own` names this device's sidecar: an entry whose latest record is its own is left alone
    (it is the newest state), and each record taken from another device is returned in
    `adopted`, to be written into this device's sidecar with the winner's `changed_ns`.
    Folders are done last, deepest first, since setting a file's time moves nothing but
    writing into a folder moves the folder's.
    """
    result = Applied()
    base = os.fsencode(root.absolute())
    seen = walk(base)
    modes = has_modes()
    folders: list[tuple[bytes, Stat, Resolved]] = []
    for rel, st in seen.entries.items():
        if not is_described(rel):
            continue
        got = sidecars.resolve(rel, st.kind, st.size, st.mtime_ns)
        if got is None or got.source == own:
            continue
        if st.kind == "d":
            folders.append((rel, st, got))
            continue
        _put_back(base, rel, st, got, modes, result)
    for rel, st, got in sorted(folders, key=lambda f: f[0].count(b"/"), reverse=True):
        _put_back(base, rel, st, got, modes, result)
    return result


def _put_back(
    base: bytes, rel: bytes, st: Stat, got: Resolved, modes: bool, result: Applied
) -> None:
    path = base if rel == b"." else base + b"/" + rel
    mode = st.mode if got.mode is None or not modes else got.mode
    mtime = st.mtime_ns if got.mtime_ns is None else got.mtime_ns
    link = st.kind == "l"
    try:
        if mode != st.mode and not link:  # a symlink's own bits mean nothing on Linux
            os.chmod(path, mode)  # noqa: PTH101 (bytes: names need not be UTF-8)
        if mtime != st.mtime_ns and (not link or os.utime in os.supports_follow_symlinks):
            os.utime(path, ns=(mtime, mtime), follow_symlinks=not link)
    except OSError as exc:
        result.failed.append((os.fsdecode(rel), exc.strerror or str(exc)))
        return
    if mode != st.mode or mtime != st.mtime_ns:
        result.entries += 1
    result.adopted[rel] = Record(st.kind, mode if modes else None, mtime, st.size, got.changed_ns)


# -- the cloud's snapshot of a live tree ---------------------------------------------------


def adjust_snapshot(root: bytes, seen: Walk, previous: dict[bytes, Entry]) -> None:
    """Turn the walk of a live tree on the cloud into what the devices had.

    The check file and the sidecars leave the walk; `NAME.rclonelink` files become the
    symlinks they stand for; each entry takes the bits and nanosecond time of the latest
    record that describes it. An entry no record describes keeps what the cloud's disk says.
    """
    sidecars = Sidecars.read(Path(os.fsdecode(root + b"/" + FOLDER)))
    for rel in [r for r in seen.entries if is_internal(r)]:
        del seen.entries[rel]
    seen.skipped = [(p, r) for p, r in seen.skipped if not is_internal(p)]
    seen.unreadable = [(p, r) for p, r in seen.unreadable if not is_internal(p)]
    for name, why in sidecars.problems:
        seen.skipped.append((FOLDER + b"/" + os.fsencode(name), f"metadata not read: {why}"))
    _links_from_rclonelink(root, seen)
    for rel, st in seen.entries.items():
        got = sidecars.resolve(rel, st.kind, st.size, st.mtime_ns)
        if got is None:
            continue
        if got.mode is not None:
            st.mode = got.mode
        elif (before := previous.get(rel)) is not None and before.kind == st.kind:
            st.mode = before.mode  # a Windows device leaves the stored bits as they were
        if got.mtime_ns is not None:
            st.mtime_ns = got.mtime_ns


def _links_from_rclonelink(root: bytes, seen: Walk) -> None:
    for rel in [r for r, st in seen.entries.items() if st.kind == "f"]:
        if not rel.endswith(LINK_SUFFIX) or rel.rsplit(b"/", 1)[-1] == LINK_SUFFIX:
            continue
        real = rel[: -len(LINK_SUFFIX)]
        st = seen.entries[rel]
        if real in seen.entries or st.size > MAX_LINK:
            continue  # not something rclone wrote for a link: kept as the file it is
        try:
            fd = os.open(root + b"/" + rel, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            with os.fdopen(fd, "rb") as handle:
                target = handle.read(MAX_LINK + 1)
        except OSError as exc:
            seen.unreadable.append((real, exc.strerror or str(exc)))
            del seen.entries[rel]
            continue
        if not target or b"\0" in target or len(target) > MAX_LINK:
            continue
        del seen.entries[rel]
        seen.entries[real] = Stat(
            "l", 0o777, st.mtime_ns, st.ctime_ns, len(target), st.ino, link_target=target
        )
