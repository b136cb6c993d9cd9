"""Writing objects into the repository: file contents through git, small blobs directly.

File contents go through `git hash-object -w --no-filters --stdin-paths`: no attribute or
filter can change the bytes, files above core.bigFileThreshold are streamed into a pack in a
few MB of memory, and several processes hash in parallel. Symlink targets and the manifest
are small bytes already in memory; they are written as loose objects in git's documented
format (zlib of "blob <size>\\0<data>"), which spares a process per symlink.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import tempfile
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from bluegrass.core.store.git import Git, GitError, describe_failure

try:
    import fcntl
except ImportError:  # not on Windows
    fcntl = None  # type: ignore[assignment]


def blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def write_blob(git_dir: Path, data: bytes) -> str:
    oid = blob_id(data)
    target = git_dir / "objects" / oid[:2] / oid[2:]
    if target.exists():
        return oid
    target.parent.mkdir(exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix="tmp_obj_")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(zlib.compress(b"blob %d\0" % len(data) + data, 1))
        os.chmod(tmp, 0o444)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return oid


def cquote(path: bytes) -> bytes:
    """Quote a path the way git's --stdin-paths unquotes it, so any byte but NUL survives."""
    out = bytearray(b'"')
    for byte in path:
        if byte in (0x22, 0x5C):
            out += b"\\" + bytes([byte])
        elif byte < 0x20 or byte == 0x7F:
            out += b"\\%03o" % byte
        else:
            out.append(byte)
    out.append(0x22)
    return bytes(out)


@dataclass
class HashResult:
    oids: dict[bytes, str] = field(default_factory=dict)
    # (key, reason) for files that could not be read
    failed: list[tuple[bytes, str]] = field(default_factory=list)


def _hash_chunk(git: Git, items: list[tuple[bytes, bytes]]) -> HashResult:
    """Hash (key, absolute path) pairs with one hash-object process, restarting past failures."""
    result = HashResult()
    pending = items
    while pending:
        proc = git.popen(["hash-object", "-w", "--no-filters", "--stdin-paths"])
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        stdin, stderr = proc.stdin, proc.stderr

        def feed(batch: list[tuple[bytes, bytes]] = pending, sink=stdin) -> None:  # noqa: ANN001
            try:
                for _, path in batch:
                    sink.write(cquote(path) + b"\n")
                sink.close()
            except BrokenPipeError:
                pass  # hash-object stopped at an unreadable file; the reader finds which

        errors: list[bytes] = []

        def collect(source=stderr, into=errors) -> None:  # noqa: ANN001
            into.append(source.read())

        drain = threading.Thread(target=collect, daemon=True)
        writer = threading.Thread(target=feed, daemon=True)
        drain.start()
        writer.start()
        done = 0
        for line in proc.stdout:
            result.oids[pending[done][0]] = line.strip().decode()
            done += 1
        proc.wait()
        writer.join()
        drain.join()
        if proc.returncode == 0 and done == len(pending):
            break
        if done >= len(pending):
            raise RuntimeError(
                f"git hash-object failed: {b''.join(errors).decode(errors='replace')}"
            )
        text = b"".join(errors).decode("utf-8", "replace")
        if _readable(pending[done][1]):
            # git could read it and still failed: writing into the repository failed (a full
            # disk), which must stop the snapshot, never pass for an unreadable file.
            raise GitError(describe_failure(["hash-object"], text.encode(), git.git_dir))
        message = text.strip().splitlines()
        result.failed.append((pending[done][0], message[-1] if message else "unreadable"))
        pending = pending[done + 1 :]
    return result


def _readable(path: bytes) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        os.read(fd, 1)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


def hash_files(
    git: Git, items: list[tuple[bytes, bytes, int]], workers: int | None = None
) -> HashResult:
    """Hash (key, absolute path, size) triples into the repository, in parallel.

    The work is split by size so each process gets a similar number of bytes: one huge file
    and many small ones should not serialise behind each other.
    """
    if not items:
        return HashResult()
    workers = max(1, min(workers or os.cpu_count() or 1, 4, len(items)))
    buckets: list[list[tuple[bytes, bytes]]] = [[] for _ in range(workers)]
    loads = [0] * workers
    for key, path, size in sorted(items, key=lambda t: -t[2]):
        i = loads.index(min(loads))
        buckets[i].append((key, path))
        loads[i] += size + 4096  # a file costs an open and an object write, whatever its size
    merged = HashResult()
    with ThreadPoolExecutor(workers) as pool:
        for part in pool.map(lambda b: _hash_chunk(git, b), [b for b in buckets if b]):
            merged.oids.update(part.oids)
            merged.failed.extend(part.failed)
    return merged


# cat-file's output pipe is widened to this (Linux; at most /proc/sys/fs/pipe-max-size
# without privileges, 1 MiB by default): large blobs then cross it in a few big pieces
# instead of 64 KiB ones, with far fewer wake-ups of the reader and of git.
CAT_PIPE_SIZE = 1 << 20


def cat_blobs(git: Git, oids: list[str]) -> subprocess.Popen[bytes]:
    """Start `git cat-file --batch` fed with `oids` from a thread; the caller reads stdout."""
    proc = git.popen(["cat-file", "--batch"])
    assert proc.stdin is not None and proc.stdout is not None
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None) if fcntl is not None else None
    if set_size is not None:
        # Refused past the limits (pipe-max-size, a user's pipe-user-pages-soft): keep the
        # default size then, it only costs speed.
        with contextlib.suppress(OSError):
            fcntl.fcntl(proc.stdout.fileno(), set_size, CAT_PIPE_SIZE)
    sink = proc.stdin

    def feed() -> None:
        try:
            for oid in oids:
                sink.write(oid.encode() + b"\n")
            sink.close()
        except BrokenPipeError:
            pass

    threading.Thread(target=feed, daemon=True).start()
    return proc
