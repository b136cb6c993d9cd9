"""Streaming a file, a folder or a whole segment at a commit as a zip or tar.gz download.

Nothing is staged on disk and nothing is held whole in memory: blobs come out of one
`git cat-file --batch` (bluegrass.core.store.objects.cat_blobs) in the order the archive
needs them, and the archive is written by the standard library's zipfile (and tarfile's
headers) into a sink that the HTTP response empties after every block. The writer is a
generator run by the response iterator itself, so there is no second thread and no queue:
a slow client slows the reading of cat-file down instead of filling memory (at most a few
CHUNKs are held), and a client that goes away closes the generator, which stops cat-file.

Real names, modes and mtimes come from the manifest (git's tree has escaped names and no
mtimes), so what is unpacked is what was backed up; empty folders and symlinks included.
Zip entries are stored, not deflated (a backup is mostly already-compressed media, and
deflate is ~20x slower, see research §5), with ZIP64 records for large files and archives.

Names are exact but for two characters a Linux name may hold and Windows reads as a place:
`\\` and `:` become their full-width look-alikes in both formats (portable_name, decision 125).
"""

from __future__ import annotations

import io
import os
import stat
import struct
import tarfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from typing import IO

from bluegrass.core.store import Repository
from bluegrass.core.store.manifest import ROOT, Entry
from bluegrass.core.store.objects import cat_blobs
from bluegrass.core.store.repository import RepositoryError

FORMATS = {"zip": "application/zip", "tar.gz": "application/gzip"}
# Blobs are read from cat-file in pieces of CHUNK, and each piece goes to the server as one
# block: one write to the socket per MiB, not per 64 KiB. Smaller writes (headers, small
# files, gzip output) are gathered into blocks of about CHUNK first.
CHUNK = 1 << 20
DIRECT = 1 << 18  # a write at least this large is handed on as it is, without a copy
GZIP_LEVEL = 6


class _Sink(io.RawIOBase):
    """A write-only, unseekable file that keeps what is written as blocks for the response.

    `take()` hands over the blocks completed so far; the response yields them before the
    writer goes on, so the sink never holds more than about two CHUNKs.
    """

    def __init__(self) -> None:
        super().__init__()
        self.ready: list[bytes] = []
        self.pending = bytearray()
        self.gzip: zlib._Compress | None = None

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        size = len(data)
        if self.gzip is not None:
            data = self.gzip.compress(data)
        if len(data) >= DIRECT:
            self._flush()
            self.ready.append(bytes(data))  # no copy when it is bytes already (the usual)
        else:
            self.pending += data
            if len(self.pending) >= CHUNK:
                self._flush()
        return size

    def _flush(self) -> None:
        if self.pending:
            self.ready.append(bytes(self.pending))
            self.pending.clear()

    def finish(self) -> None:
        if self.gzip is not None:
            self.pending += self.gzip.flush()
        self._flush()

    def take(self) -> list[bytes]:
        blocks, self.ready = self.ready, []
        return blocks


# Windows, and every extractor that runs there (Explorer, 7-Zip, tar.exe, Python's zipfile),
# reads `\` as a folder separator (so `..\..\x` climbs out of the folder chosen) and `X:` as a
# drive (`C:x`, `C:\x`) or `name:stream` as a hidden stream of another file. Both are legal in
# a Linux name, so each becomes its full-width look-alike, as rclone's encoder for Windows
# writes them (U+FF3C, U+FF1A): still readable, never a place. `/` never occurs inside a
# name and `..` is never a name, so nothing else can climb out (decision 125).
_WINDOWS_PLACES = ((b"\\", "\uff3c".encode()), (b":", "\uff1a".encode()))


def portable_name(name: bytes) -> bytes:
    """Given an archive name (components joined by `/`), return it with every `\\` and `:` as
    its full-width look-alike: a name no extractor reads as another folder or a drive."""
    for char, alike in _WINDOWS_PLACES:
        name = name.replace(char, alike)
    return name


def archive_names(chosen: dict[bytes, Entry], path: bytes, top: bytes) -> list[tuple[bytes, bytes]]:
    """(name inside the archive, manifest path) pairs, parents before children.

    The selected folder becomes the archive's top folder `top`; a selected file is the
    archive's only entry, under its own name. Names go through portable_name.
    """
    pairs = []
    for real in sorted(chosen):
        if real == path:
            name = top
        else:
            rel = real if path == ROOT else real[len(path) + 1 :]
            name = top + b"/" + rel
        pairs.append((portable_name(name), real))
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
    sink: _Sink,
    pairs: list[tuple[bytes, bytes]],
    chosen: dict[bytes, Entry],
    proc_out: IO[bytes],
) -> Iterator[None]:
    """Write the zip into `sink`, pausing (yielding) whenever there may be blocks to send."""
    # No `with`: on an error or a closed download the central directory must not be written.
    zf = zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True)
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
            yield
            continue
        length = _next_object(proc_out, entry)
        info.file_size = length  # decides ZIP64 for this entry before it is written
        with zf.open(info, "w") as dst:
            yield from _copy_object(proc_out, length, dst.write)
        yield
    zf.close()
    yield


def _write_tar(
    sink: _Sink,
    pairs: list[tuple[bytes, bytes]],
    chosen: dict[bytes, Entry],
    proc_out: IO[bytes],
) -> Iterator[None]:
    """Write the tar.gz into `sink`, pausing (yielding) whenever there may be blocks to send.

    tarfile makes each member's header (PAX: exact name bytes, sub-second mtimes); the data,
    the padding and the end of the archive are laid out here as TarFile.addfile and close
    do, so a large file never has to go through tarfile in one call.
    """
    sink.gzip = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
    offset = 0
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
        length = 0
        if entry.kind == "d":
            info.type = tarfile.DIRTYPE
        else:
            length = _next_object(proc_out, entry)
            if entry.kind == "l":
                info.type = tarfile.SYMTYPE
                info.linkname = os.fsdecode(_read_exactly(proc_out, length))
                proc_out.read(1)
                length = 0
            else:
                info.size = length
        header = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        sink.write(header)
        offset += len(header)
        if length:
            yield from _copy_object(proc_out, length, sink.write)
            padding = -length % tarfile.BLOCKSIZE
            sink.write(tarfile.NUL * padding)
            offset += length + padding
        yield
    end = tarfile.NUL * (2 * tarfile.BLOCKSIZE)
    offset += len(end)
    sink.write(end + tarfile.NUL * (-offset % tarfile.RECORDSIZE))
    yield


def _next_object(proc_out: IO[bytes], entry: Entry) -> int:
    header = proc_out.readline().split()
    if len(header) != 3 or header[1] != b"blob":
        raise RepositoryError(f"object {entry.oid} is missing from the repository")
    return int(header[2])


def _read_exactly(proc_out: IO[bytes], size: int) -> bytes:
    data = proc_out.read(size)
    if len(data) != size:
        raise RepositoryError("an object ended early while reading the repository")
    return data


def _copy_object(
    proc_out: IO[bytes], length: int, write: Callable[[bytes], object]
) -> Iterator[None]:
    """The `length` bytes of the current object (and its newline) to `write`, a CHUNK at a time."""
    left = length
    while left:
        block = _read_exactly(proc_out, min(CHUNK, left))
        left -= len(block)
        write(block)
        yield
    proc_out.read(1)  # the newline after each object


def stream(
    repo: Repository, chosen: dict[bytes, Entry], path: bytes, top: bytes, fmt: str
) -> Iterator[bytes]:
    """The archive's bytes, produced on the fly; closing the iterator stops the work.

    Nothing runs before the first block is asked for. An error after that is raised from the
    iterator: the headers are sent already, so the only honest signal left is a broken
    download (the client sees the connection end before the archive's end), never a
    shorter archive that looks complete.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown archive format {fmt!r}")
    return _blocks(repo, chosen, path, top, fmt)


def _blocks(
    repo: Repository, chosen: dict[bytes, Entry], path: bytes, top: bytes, fmt: str
) -> Iterator[bytes]:
    pairs = archive_names(chosen, path, top)
    blobs = [chosen[real].oid or "" for _, real in pairs if chosen[real].kind != "d"]
    sink = _Sink()
    proc = cat_blobs(repo.git, blobs)
    assert proc.stdout is not None
    try:
        write = _write_zip if fmt == "zip" else _write_tar
        for _ in write(sink, pairs, chosen, proc.stdout):
            yield from sink.take()
        sink.finish()
        yield from sink.take()
    finally:
        # Also on GeneratorExit: the WSGI server closes the iterator when the client is gone.
        proc.stdout.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
