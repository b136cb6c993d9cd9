"""Streaming a file, a folder or a whole segment at a commit as a zip or tar.gz download.

Nothing is staged on disk and nothing is held whole in memory: blobs come out of one
`git cat-file --batch` (bluegrass.core.store.objects.cat_blobs) in the order the archive
needs them, and the archive is written by the standard library's zipfile/tarfile into a
small bounded queue that the HTTP response drains. A slow client therefore slows the
producer down instead of filling memory, and a client that goes away stops it.

Real names, modes and mtimes come from the manifest (git's tree has escaped names and no
mtimes), so what is unpacked is what was backed up; empty folders and symlinks included.
Zip entries are stored, not deflated (a backup is mostly already-compressed media, and
deflate is ~20x slower, see research §5), with ZIP64 records for large files and archives.
"""

from __future__ import annotations

import io
import os
import queue
import stat
import struct
import tarfile
import threading
import time
import zipfile
import zlib
from collections.abc import Iterator
from typing import IO

from bluegrass.core.store import Repository
from bluegrass.core.store.manifest import ROOT, Entry
from bluegrass.core.store.objects import cat_blobs
from bluegrass.core.store.repository import RepositoryError

FORMATS = {"zip": "application/zip", "tar.gz": "application/gzip"}
CHUNK = 1 << 16
QUEUE_CHUNKS = 32  # at most ~2 MB in flight between the producer and the response
GZIP_LEVEL = 6


class _Gone(Exception):
    """The response was closed (client disconnected): stop producing."""


class _QueueWriter(io.RawIOBase):
    """A write-only, unseekable file whose bytes go to a bounded queue in CHUNK pieces."""

    def __init__(self, out: queue.Queue[bytes | BaseException | None], stop: threading.Event):
        super().__init__()
        self.out = out
        self.stop = stop
        self.buffer = bytearray()
        self.gzip: zlib._Compress | None = None

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        if self.gzip is not None:
            self.buffer += self.gzip.compress(data)
        else:
            self.buffer += data
        while len(self.buffer) >= CHUNK:
            self._put(bytes(self.buffer[:CHUNK]))
            del self.buffer[:CHUNK]
        return len(data)

    def finish(self) -> None:
        if self.gzip is not None:
            self.buffer += self.gzip.flush()
        if self.buffer:
            self._put(bytes(self.buffer))
            self.buffer.clear()

    def _put(self, block: bytes) -> None:
        while True:
            if self.stop.is_set():
                raise _Gone
            try:
                self.out.put(block, timeout=0.5)
                return
            except queue.Full:
                continue  # the client is slow; look at `stop` again and keep waiting


class _Limited(io.RawIOBase):
    """Exactly `length` bytes of a larger stream (one object of cat-file --batch)."""

    def __init__(self, source: IO[bytes], length: int) -> None:
        super().__init__()
        self.source = source
        self.left = length

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        size = self.left if size < 0 else min(size, self.left)
        data = self.source.read(size)
        if not data:
            raise RepositoryError("an object ended early while reading the repository")
        self.left -= len(data)
        return data


def archive_names(chosen: dict[bytes, Entry], path: bytes, top: bytes) -> list[tuple[bytes, bytes]]:
    """(name inside the archive, manifest path) pairs, parents before children.

    The selected folder becomes the archive's top folder `top`; a selected file is the
    archive's only entry, under its own name.
    """
    pairs = []
    for real in sorted(chosen):
        if real == path:
            name = top
        else:
            rel = real if path == ROOT else real[len(path) + 1 :]
            name = top + b"/" + rel
        pairs.append((name, real))
    return pairs


def _dos_time(mtime: float) -> tuple[int, int, int, int, int, int]:
    t = time.localtime(min(max(mtime, 315532800 + 86400), 4354819199))  # 1980..2107
    return (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)


def _unix_time_extra(mtime_ns: int) -> bytes:
    """Info-ZIP's "extended timestamp" field: the exact second, where DOS time has 2 s."""
    seconds = mtime_ns // 1_000_000_000
    if not -(2**31) <= seconds < 2**31:
        return b""
    return struct.pack("<HHBl", 0x5455, 5, 1, seconds)


def _zip_name(name: bytes) -> str:
    # Zip names are UTF-8 (flag bit 11); a name that is not valid UTF-8 cannot be carried
    # exactly, so its bad bytes become U+FFFD. tar.gz keeps every name byte-exact.
    return name.decode("utf-8", "replace")


def _write_zip(
    sink: _QueueWriter,
    pairs: list[tuple[bytes, bytes]],
    chosen: dict[bytes, Entry],
    proc_out: IO[bytes],
) -> None:
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, real in pairs:
            entry = chosen[real]
            mtime = entry.mtime_ns / 1e9
            if entry.kind == "d":
                info = zipfile.ZipInfo(_zip_name(name) + "/", _dos_time(mtime))
                info.external_attr = ((stat.S_IFDIR | entry.mode) << 16) | 0x10
            else:
                info = zipfile.ZipInfo(_zip_name(name), _dos_time(mtime))
                kind = stat.S_IFLNK if entry.kind == "l" else stat.S_IFREG
                info.external_attr = (kind | entry.mode) << 16
            info.create_system = 3  # Unix: external_attr carries the mode
            info.compress_type = zipfile.ZIP_STORED
            info.extra = _unix_time_extra(entry.mtime_ns)
            if entry.kind == "d":
                zf.writestr(info, b"")
                continue
            length = _next_object(proc_out, entry)
            info.file_size = length  # decides ZIP64 for this entry before it is written
            with zf.open(info, "w") as dst:
                src = _Limited(proc_out, length)
                for block in iter(lambda s=src: s.read(CHUNK), b""):
                    dst.write(block)
            proc_out.read(1)  # the newline after each object


def _write_tar(
    sink: _QueueWriter,
    pairs: list[tuple[bytes, bytes]],
    chosen: dict[bytes, Entry],
    proc_out: IO[bytes],
) -> None:
    sink.gzip = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
    with tarfile.open(
        fileobj=sink,  # type: ignore[arg-type]
        mode="w|",
        format=tarfile.PAX_FORMAT,
        encoding="utf-8",
        errors="surrogateescape",
    ) as tf:
        for name, real in pairs:
            entry = chosen[real]
            info = tarfile.TarInfo(os.fsdecode(name))
            info.mode = entry.mode
            # A float carries sub-second precision in a PAX record.
            info.mtime = (
                entry.mtime_ns / 1e9
                if entry.mtime_ns % 1_000_000_000
                else (entry.mtime_ns // 1_000_000_000)
            )
            info.uname = info.gname = ""
            if entry.kind == "d":
                info.type = tarfile.DIRTYPE
                tf.addfile(info)
                continue
            length = _next_object(proc_out, entry)
            if entry.kind == "l":
                info.type = tarfile.SYMTYPE
                info.linkname = os.fsdecode(proc_out.read(length))
                proc_out.read(1)
                tf.addfile(info)
                continue
            info.size = length
            tf.addfile(info, _Limited(proc_out, length))  # type: ignore[arg-type]
            proc_out.read(1)


def _next_object(proc_out: IO[bytes], entry: Entry) -> int:
    header = proc_out.readline().split()
    if len(header) != 3 or header[1] != b"blob":
        raise RepositoryError(f"object {entry.oid} is missing from the repository")
    return int(header[2])


def stream(
    repo: Repository, chosen: dict[bytes, Entry], path: bytes, top: bytes, fmt: str
) -> Iterator[bytes]:
    """The archive's bytes, produced on the fly; closing the iterator stops the work."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown archive format {fmt!r}")
    pairs = archive_names(chosen, path, top)
    blobs = [chosen[real].oid or "" for _, real in pairs if chosen[real].kind != "d"]
    out: queue.Queue[bytes | BaseException | None] = queue.Queue(QUEUE_CHUNKS)
    stop = threading.Event()

    def produce() -> None:
        proc = cat_blobs(repo.git, blobs)
        assert proc.stdout is not None
        sink = _QueueWriter(out, stop)
        try:
            if fmt == "zip":
                _write_zip(sink, pairs, chosen, proc.stdout)
            else:
                _write_tar(sink, pairs, chosen, proc.stdout)
            sink.finish()
            result: BaseException | None = None
        except _Gone:
            return
        except BaseException as exc:  # handed to the response, which fails the download
            result = exc
        finally:
            proc.stdout.close()
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        while not stop.is_set():
            try:
                out.put(result, timeout=0.5)
                return
            except queue.Full:
                continue

    worker = threading.Thread(target=produce, name="bluegrass-archive", daemon=True)
    worker.start()
    try:
        while True:
            item = out.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                # Headers are sent already: the only honest signal left is a broken
                # download (the client sees the connection end before the archive's end).
                raise item
            yield item
    finally:
        stop.set()
        worker.join(timeout=5)
