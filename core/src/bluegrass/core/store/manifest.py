"""The manifest: what git itself cannot hold about a snapshot.

Stored in every snapshot commit as the blob `bluegrass-manifest` beside the `files/` tree.
It lists every entry of the user's tree under its real name (raw bytes, not the escaped git
name) with its full permission bits, its mtime in nanoseconds, and for files and symlinks the
git blob holding the content, so a restore needs nothing else. Directories are listed too,
which is how empty folders survive. Format (docs/repository-format.md):

    "bluegrass-manifest 1" NUL
    then one record per entry, sorted by path:
    KIND SP MODE SP MTIME_NS SP SIZE SP OID TAB PATH NUL

KIND is f (regular file), l (symlink) or d (directory); MODE is octal permission bits
(st_mode & 0o7777); OID is the blob's hex id, or "-" for a directory; PATH is relative to the
segment root with "/" separators, "." for the root itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HEADER = b"bluegrass-manifest 1"
_OID = re.compile(rb"[0-9a-f]{40}|-")
ROOT = b"."


class ManifestError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Entry:
    kind: str  # "f", "l" or "d"
    mode: int  # permission bits, st_mode & 0o7777
    mtime_ns: int
    size: int
    oid: str | None  # blob id for files and symlinks

    @property
    def git_mode(self) -> str:
        if self.kind == "l":
            return "120000"
        return "100755" if self.mode & 0o100 else "100644"

    def same_content(self, other: Entry) -> bool:
        """Whether a snapshot must record a change between these two states of one path.

        A directory's mtime alone does not count: it moves whenever anything inside is
        created or removed, temporary files included, and would make every check a commit.
        """
        if self.kind != other.kind or self.mode != other.mode:
            return False
        if self.kind == "d":
            return True
        return self.oid == other.oid and self.mtime_ns == other.mtime_ns


def serialize(entries: dict[bytes, Entry]) -> bytes:
    parts = [HEADER, b"\0"]
    for path in sorted(entries):
        e = entries[path]
        parts.append(
            b"%s %o %d %d %s\t%s\0"
            % (e.kind.encode(), e.mode, e.mtime_ns, e.size, (e.oid or "-").encode(), path)
        )
    return b"".join(parts)


def parse(data: bytes) -> dict[bytes, Entry]:
    records = data.split(b"\0")
    if not records or records[0] != HEADER or records[-1] != b"":
        raise ManifestError("not a bluegrass manifest, version 1")
    entries: dict[bytes, Entry] = {}
    for record in records[1:-1]:
        try:
            fields, path = record.split(b"\t", 1)
            kind, mode, mtime_ns, size, oid = fields.split(b" ")
            entry = Entry(
                kind=kind.decode(),
                mode=int(mode, 8),
                mtime_ns=int(mtime_ns),
                size=int(size),
                oid=None if oid == b"-" else oid.decode(),
            )
        except ValueError as exc:
            raise ManifestError(f"malformed manifest record {record[:80]!r}") from exc
        if entry.kind not in ("f", "l", "d") or (entry.kind != "d") != (entry.oid is not None):
            raise ManifestError(f"malformed manifest record {record[:80]!r}")
        if not valid_path(path) or (path == ROOT and entry.kind != "d"):
            # A manifest comes from a repository that may have been tampered with (a mirror
            # accepts any well-formed commit): a path must never lead out of the restore.
            raise ManifestError(f"unsafe path in manifest: {path[:80]!r}")
        if not _OID.fullmatch(oid):
            raise ManifestError(f"malformed object id in manifest: {oid[:80]!r}")
        entries[path] = entry
    return entries


def valid_path(path: bytes) -> bool:
    """A relative '/'-separated path with no empty, '.' or '..' part (or the root '.')."""
    if path == ROOT:
        return True
    if not path or b"\0" in path:
        return False
    return all(part not in (b"", b".", b"..") for part in path.split(b"/"))
