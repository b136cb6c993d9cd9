"""The stat cache: lets an unchanged tree skip re-hashing, the way git's index does.

Kept beside the repository (GIT_DIR/bluegrass/), never in the user's tree, and tied to the
commit it describes: if the branch moved without it (a crash between commit and save), it is
ignored and every file is hashed again, which is slow but always right.

Two files: `statcache` holds every entry of the last snapshot's manifest with the stat data
seen when it was read; `statcache.head` is small and holds the tree's stat fingerprint, so an
unchanged tree is recognised without loading the rest.
"""

from __future__ import annotations

import json
import marshal
import os
from dataclasses import dataclass, field
from pathlib import Path

from bluegrass.core.store.manifest import Entry

VERSION = 2


@dataclass(slots=True)
class Cached:
    kind: str
    mode: int
    mtime_ns: int
    ctime_ns: int
    size: int
    ino: int
    oid: str | None
    # Seen modified within the timestamp granularity of the snapshot, or never seen at all
    # (kept from an earlier snapshot because unreadable): hash again next time.
    racy: bool

    def entry(self) -> Entry:
        return Entry(self.kind, self.mode, self.mtime_ns, self.size, self.oid)


@dataclass
class Head:
    commit: str
    fingerprint: str | None
    racy: bool
    files: int
    bytes: int
    # What the last full walk skipped (sockets, FIFOs…), reported again by the fast path.
    skipped: list[list[str]] = field(default_factory=list)


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk must not keep half a cache
        raise


def load_head(folder: Path, commit: str | None) -> Head | None:
    if commit is None:
        return None
    try:
        data = json.loads((folder / "statcache.head").read_text())
        head = Head(**data)
    except (OSError, ValueError, TypeError):
        return None
    return head if head.commit == commit else None


def load(folder: Path, commit: str | None) -> dict[bytes, Cached] | None:
    if commit is None:
        return None
    try:
        # Our own file inside the repository directory: whoever can write it owns the repo.
        data = marshal.loads((folder / "statcache").read_bytes())  # noqa: S302
    except (OSError, EOFError, ValueError, TypeError):
        return None
    if not isinstance(data, dict) or data.get("version") != VERSION or data.get("commit") != commit:
        return None
    return {p: Cached(*t) for p, t in data["entries"].items()}


def save(folder: Path, head: Head, entries: dict[bytes, Cached]) -> None:
    # The big file first: a crash in between leaves a head that does not match, never a
    # head that vouches for a stale cache.
    (folder / "statcache.head").unlink(missing_ok=True)
    data = {
        "version": VERSION,
        "commit": head.commit,
        "entries": {
            p: (c.kind, c.mode, c.mtime_ns, c.ctime_ns, c.size, c.ino, c.oid, c.racy)
            for p, c in entries.items()
        },
    }
    _write(folder / "statcache", marshal.dumps(data))
    _write(folder / "statcache.head", json.dumps(head.__dict__).encode())
