"""Restoring a snapshot, or part of one, into a new folder, exactly as it was.

Everything is written into a hidden temporary folder beside the target and renamed into place
at the end, so an interrupted restore leaves no half-written target behind.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from bluegrass.core.errors import UsageError
from bluegrass.core.store.manifest import ROOT, Entry
from bluegrass.core.store.objects import cat_blobs
from bluegrass.core.store.repository import Repository, RepositoryError

CHUNK = 1 << 20


@dataclass
class RestoreResult:
    commit: str
    target: Path
    files: int
    bytes: int

    def to_json(self) -> dict[str, object]:
        return {
            "commit": self.commit,
            "target": str(self.target),
            "files": self.files,
            "bytes": self.bytes,
        }


def select(entries: dict[bytes, Entry], path: str | None) -> dict[bytes, Entry]:
    """The entries under `path`, keyed by their path inside the restored folder.

    A folder is restored as the target itself; a file or link lands inside the target.
    """
    if not path or path.strip("/") in ("", "."):
        return dict(entries)
    wanted = os.fsencode(path.strip("/"))
    if any(part in (b"", b".", b"..") for part in wanted.split(b"/")):
        raise UsageError(f"not a path inside the segment: {path!r}")
    entry = entries.get(wanted)
    if entry is None:
        raise UsageError(f"{path!r} is not in this snapshot")
    if entry.kind != "d":
        name = wanted.rsplit(b"/", 1)[-1]
        return {name: entry}
    prefix = wanted + b"/"
    chosen = {ROOT: entry}
    chosen.update({p[len(prefix) :]: e for p, e in entries.items() if p.startswith(prefix)})
    return chosen


def check_target(target: Path) -> None:
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise UsageError(f"--to {target} exists and is not a folder")
    if target.is_dir() and any(target.iterdir()):
        raise UsageError(f"--to {target} is not empty; restore into a new or empty folder")


def restore(
    repo: Repository, target: Path, *, at: str | None = None, path: str | None = None
) -> RestoreResult:
    commit = repo.resolve(at)
    chosen = select(repo.manifest(commit), path)
    target = target.absolute()
    check_target(target)
    created = [p for p in reversed(target.parents) if not p.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.bluegrass-restore-{secrets.token_hex(4)}"
    staging.mkdir(mode=0o700)
    try:
        files, size = _write(repo, staging, chosen)
        if target.exists():
            target.rmdir()  # empty, checked above
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in reversed(created):  # only the folders this restore made, if still empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return RestoreResult(commit, target, files, size)


def _write(repo: Repository, staging: Path, chosen: dict[bytes, Entry]) -> tuple[int, int]:
    base = os.fsencode(staging)

    def where(rel: bytes) -> bytes:
        return base if rel == ROOT else base + b"/" + rel

    dirs = sorted(p for p, e in chosen.items() if e.kind == "d" and p != ROOT)
    for rel in dirs:
        os.makedirs(where(rel), mode=0o700, exist_ok=True)
    blobs = sorted(
        (p for p, e in chosen.items() if e.kind != "d"), key=lambda p: chosen[p].oid or ""
    )
    for rel in blobs:
        os.makedirs(os.path.dirname(where(rel)), mode=0o700, exist_ok=True)
    files = size = 0
    proc = cat_blobs(repo.git, [chosen[p].oid or "" for p in blobs])
    assert proc.stdout is not None
    try:
        for rel in blobs:
            entry = chosen[rel]
            header = proc.stdout.readline().split()
            if len(header) != 3 or header[1] != b"blob":
                raise RepositoryError(
                    f"{repo.path}: object {entry.oid} for {os.fsdecode(rel)!r} is missing"
                )
            length = int(header[2])
            dest = where(rel)
            if entry.kind == "l":
                target = proc.stdout.read(length)
                proc.stdout.read(1)
                os.symlink(target, dest)
                if os.utime in os.supports_follow_symlinks:
                    os.utime(dest, ns=(entry.mtime_ns, entry.mtime_ns), follow_symlinks=False)
                continue
            flags = (
                os.O_WRONLY
                | os.O_CREAT
                | os.O_EXCL
                | getattr(os, "O_BINARY", 0)
                | getattr(os, "O_NOFOLLOW", 0)
            )
            fd = os.open(dest, flags, 0o600)
            with os.fdopen(fd, "wb") as out:
                remaining = length
                while remaining:
                    chunk = proc.stdout.read(min(CHUNK, remaining))
                    if not chunk:
                        raise RepositoryError(f"{repo.path}: object {entry.oid} ended early")
                    out.write(chunk)
                    remaining -= len(chunk)
            proc.stdout.read(1)  # the newline after each object
            os.chmod(dest, entry.mode)
            os.utime(dest, ns=(entry.mtime_ns, entry.mtime_ns))
            files += 1
            size += length
    finally:
        proc.stdout.close()
        proc.wait()
    # Folders last and deepest first: writing inside a folder changes its mtime, and a
    # read-only folder must stay writable until everything in it is there.
    for rel in sorted((p for p, e in chosen.items() if e.kind == "d"), key=len, reverse=True):
        entry = chosen[rel]
        os.chmod(where(rel), entry.mode)
        os.utime(where(rel), ns=(entry.mtime_ns, entry.mtime_ns))
    return files, size
