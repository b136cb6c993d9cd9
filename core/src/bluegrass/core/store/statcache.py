"""The stat cache: lets an unchanged file skip re-hashing, the way git's index does.

Kept beside the repository (GIT_DIR/bluegrass/statcache), never in the user's tree, and tied
to the commit it describes: if the branch moved without it (a crash between commit and save),
it is ignored and every file is hashed again, which is slow but always right.
"""

from __future__ import annotations

import marshal
import os
from dataclasses import dataclass
from pathlib import Path

VERSION = 1


@dataclass(slots=True)
class Cached:
    kind: str
    mode: int
    mtime_ns: int
    ctime_ns: int
    size: int
    ino: int
    oid: str
    # Seen modified within the timestamp granularity of the snapshot: hash again next time.
    racy: bool


def load(path: Path, commit: str | None) -> dict[bytes, Cached]:
    if commit is None:
        return {}
    try:
        # Our own file inside the repository directory: whoever can write it owns the repo.
        data = marshal.loads(path.read_bytes())  # noqa: S302
    except (OSError, EOFError, ValueError, TypeError):
        return {}
    if not isinstance(data, dict) or data.get("version") != VERSION or data.get("commit") != commit:
        return {}
    return {p: Cached(*t) for p, t in data["entries"].items()}


def save(path: Path, commit: str, entries: dict[bytes, Cached]) -> None:
    data = {
        "version": VERSION,
        "commit": commit,
        "entries": {
            p: (c.kind, c.mode, c.mtime_ns, c.ctime_ns, c.size, c.ino, c.oid, c.racy)
            for p, c in entries.items()
        },
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(marshal.dumps(data))
    os.replace(tmp, path)
