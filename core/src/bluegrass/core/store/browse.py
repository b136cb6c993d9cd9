"""Reading a segment's history for a browser: folders, files, history and search, read-only.

Everything here answers one request of a web page, so it avoids whole-history and whole-tree
work where git can do better, and caches what cannot change:

* a commit's date, summary and manifest blob id never change (commits are immutable and a
  segment's history is append-only), so they are cached per repository and commit;
* a parsed manifest, with a folder -> children index built once, is cached by its blob id
  (content-addressed: the same id is the same manifest in any repository);
* the history of a path is `git log -- files/<escaped path>`, which git answers from the
  commit-graph's changed-path Bloom filters when `maintain` has written them.

Paths are the user's real names as bytes (manifest keys); the git side is reached through
escaping.escape_path. Nothing here writes to the repository.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

from bluegrass.core.store import manifest as mf
from bluegrass.core.store.escaping import escape_path, unescape_path
from bluegrass.core.store.git import GitError
from bluegrass.core.store.manifest import ROOT, Entry
from bluegrass.core.store.repository import (
    BRANCH,
    FILES,
    MANIFEST,
    Repository,
    RepositoryError,
    parse_date,
)

K = TypeVar("K")
V = TypeVar("V")

_HEX40 = re.compile(r"[0-9a-f]{40}")
# What Repository.resolve tries as a commit id before reading `at` as a date.
_COMMIT_ID = re.compile(r"[0-9a-fA-F]{4,40}")
# Text diffs and previews read at most this much of a blob into memory.
DIFF_LIMIT = 1 << 20


class PathError(ValueError):
    """A path that is not a plain relative path inside a segment."""


def check_path(path: bytes) -> bytes:
    """`path` as a manifest key if it is a relative path inside the segment, else PathError.

    The empty path and "." mean the segment's root. Refused: NUL anywhere, a leading "/"
    (absolute), empty components ("a//b"), and "." or ".." components, so that a path taken
    from a URL can only ever name an entry of the segment.
    """
    if b"\0" in path:
        raise PathError("a path cannot contain NUL")
    if path in (b"", ROOT):
        return ROOT
    if path.startswith(b"/"):
        raise PathError("a path inside a segment is relative")
    parts = path.removesuffix(b"/").split(b"/")
    if any(part in (b"", b".", b"..") for part in parts):
        raise PathError("a path cannot contain empty, '.' or '..' components")
    return b"/".join(parts)


def parent_of(path: bytes) -> bytes:
    return path.rsplit(b"/", 1)[0] if b"/" in path else ROOT


def name_of(path: bytes) -> bytes:
    return path.rsplit(b"/", 1)[-1]


class LRU(Generic[K, V]):
    """A small thread-safe least-recently-used cache (gunicorn threads share a worker)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: K, value: V) -> V:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value

    def get_or(self, key: K, make: Callable[[], V]) -> V:
        found = self.get(key)
        return found if found is not None else self.put(key, make())


@dataclass(frozen=True)
class SnapshotInfo:
    """What browsing reads of one snapshot (a commit): not a snapshot being made, which is
    bluegrass.core.store.snapshot's work."""

    commit: str
    date: datetime
    summary: str
    manifest_oid: str
    parent: str | None


@dataclass
class Index:
    """A parsed manifest plus, per folder, its children sorted for display (folders first)."""

    entries: dict[bytes, Entry]
    children: dict[bytes, list[bytes]]

    @classmethod
    def build(cls, entries: dict[bytes, Entry]) -> Index:
        children: dict[bytes, list[bytes]] = {}
        for path in entries:
            if path != ROOT:
                children.setdefault(parent_of(path), []).append(path)
        for paths in children.values():
            paths.sort(key=lambda p: (entries[p].kind != "d", name_of(p).lower(), p))
        return cls(entries, children)


_SNAPSHOTS: LRU[tuple[str, str], SnapshotInfo] = LRU(4096)
_FIRST: LRU[str, SnapshotInfo] = LRU(4096)
_INDEXES: LRU[str, Index] = LRU(int(os.environ.get("BLUEGRASS_MANIFEST_CACHE", "8")))


def snapshot_info(repo: Repository, commit: str) -> SnapshotInfo:
    """Date, summary, manifest id and first parent of a commit of this repository (cached)."""
    key = (str(repo.path), commit)
    found = _SNAPSHOTS.get(key)
    if found is not None:
        return found
    raw = repo.git.run(["log", "-1", "--format=%H%x1f%cI%x1f%P%x1f%s", commit, "--"]).stdout
    oid, date, parents, summary = raw.decode("utf-8", "replace").rstrip("\n").split("\x1f", 3)
    manifest_oid = repo.git.out(["rev-parse", "--verify", f"{oid}:{MANIFEST}"])
    info = SnapshotInfo(
        commit=oid,
        date=datetime.fromisoformat(date),
        summary=summary,
        manifest_oid=manifest_oid,
        parent=parents.split()[0] if parents.split() else None,
    )
    return _SNAPSHOTS.put(key, info)


def resolve(repo: Repository, at: str | None) -> SnapshotInfo:
    """The snapshot for `at` (a commit id, a date, or None for the newest).

    A full commit id already seen on this repository's branch is answered from the cache
    without running git: the branch only ever grows, so it stays in history.
    """
    if at is not None and _HEX40.fullmatch(at):
        found = _SNAPSHOTS.get((str(repo.path), at))
        if found is not None:
            return found
    when = None
    if at is not None and not _COMMIT_ID.fullmatch(at):
        when = parse_date(at)  # a date: RepositoryError if it is not one either
        first = first_snapshot(repo)
        if first is not None and when < first.date:
            raise before_first(when, first)
    elif at is not None:
        # Hex digits that are also a date ("19000101"): Repository.resolve reads them as a
        # date when no commit has them as its prefix, and they get the check below.
        with contextlib.suppress(RepositoryError):
            when = parse_date(at)
    try:
        commit = repo.resolve(at)
    except GitError as exc:
        raise RepositoryError(str(exc)) from exc
    except RepositoryError:
        first = first_snapshot(repo) if when is not None else None
        if first is not None and when is not None and when < first.date:
            raise before_first(when, first) from None
        raise
    found = snapshot_info(repo, commit)
    if (
        when is not None
        and at is not None
        and not commit.startswith(at.lower())
        and found.date > when
    ):
        # Never another snapshot in its place: git reads some dates (before 1970, say) as
        # no limit at all, and `at=1900-01-01` showed the newest (issue 13, finding 13).
        first = first_snapshot(repo) or found
        raise before_first(when, first)
    return found


class BeforeFirst(RepositoryError):
    """`at` is a date before the segment's first snapshot."""


def before_first(when: datetime, first: SnapshotInfo) -> BeforeFirst:
    return BeforeFirst(
        f"There is no snapshot at or before {when.astimezone():%Y-%m-%d %H:%M}. "
        f"The first snapshot is from {first.date.astimezone():%Y-%m-%d %H:%M}."
    )


def first_snapshot(repo: Repository) -> SnapshotInfo | None:
    """The segment's first snapshot (None before there is one). Cached per repository: the
    branch only grows, so its first commit never changes."""
    key = str(repo.path)
    known = _FIRST.get(key)
    if known is not None:
        return known
    if repo.head() is None:
        return None
    roots = repo.git.out(["rev-list", "--first-parent", "--max-parents=0", BRANCH]).split()
    if not roots:
        return None
    return _FIRST.put(key, snapshot_info(repo, roots[-1]))


def index(repo: Repository, snap: SnapshotInfo) -> Index:
    def load() -> Index:
        try:
            entries = mf.parse(repo.read_blob(snap.manifest_oid))
        except mf.ManifestError as exc:
            raise RepositoryError(f"{repo.path}: commit {snap.commit[:12]}: {exc}") from exc
        return Index.build(entries)

    return _INDEXES.get_or(snap.manifest_oid, load)


def recent(repo: Repository, limit: int = 30) -> list[SnapshotInfo]:
    """The newest `limit` snapshots, newest first (for a snapshot picker)."""
    if repo.head() is None:
        return []
    raw = repo.git.run(
        ["log", "--first-parent", f"-{limit}", "-z", "--format=%H%x1f%cI%x1f%P%x1f%s", BRANCH]
    ).stdout
    out = []
    for record in raw.decode("utf-8", "replace").split("\0"):
        if record.strip():
            oid, date, parents, summary = record.strip("\n").split("\x1f", 3)
            out.append(
                SnapshotInfo(
                    oid,
                    datetime.fromisoformat(date),
                    summary,
                    "",
                    parents.split()[0] if parents.split() else None,
                )
            )
    return out


def git_path(path: bytes) -> bytes:
    """The path inside the commit's tree for a real path (ROOT is the files/ tree)."""
    base = FILES.encode()
    return base if path == ROOT else base + b"/" + escape_path(path)


def real_path(stored: bytes) -> bytes:
    """A tree path from git output (files/<escaped>) back to the user's real path."""
    prefix = FILES.encode() + b"/"
    if not stored.startswith(prefix):
        raise ValueError(f"not under {FILES}/: {stored!r}")
    return unescape_path(stored[len(prefix) :])


# -- history -------------------------------------------------------------------------------


@dataclass
class Change:
    status: str  # A added, M modified, D deleted, T type changed
    path: bytes  # real path
    old_oid: str | None
    new_oid: str | None
    old_mode: str
    new_mode: str


@dataclass
class HistoryItem:
    commit: str
    date: datetime
    summary: str
    parent: str | None
    suspicious: bool
    changes: list[Change] = field(default_factory=list)


def _log_records(raw: bytes) -> Iterator[tuple[list[str], list[bytes]]]:
    """Split `git log -z --raw --format=%x01...` output into (header fields, raw tokens)."""
    for chunk in raw.split(b"\x01"):
        if not chunk:
            continue
        header, _, rest = chunk.partition(b"\0")
        tokens = [t for t in rest.lstrip(b"\n").split(b"\0")]
        yield header.decode("utf-8", "replace").split("\x1f"), tokens


def _changes(tokens: list[bytes]) -> list[Change]:
    out = []
    i = 0
    while i + 1 < len(tokens):
        meta = tokens[i]
        if not meta.startswith(b":"):
            i += 1
            continue
        old_mode, new_mode, old_oid, new_oid, status = meta[1:].decode().split(" ")
        path = tokens[i + 1]
        i += 2
        zero = set("0")
        out.append(
            Change(
                status=status[0],
                path=real_path(path),
                old_oid=None if set(old_oid) == zero else old_oid,
                new_oid=None if set(new_oid) == zero else new_oid,
                old_mode=old_mode,
                new_mode=new_mode,
            )
        )
    return out


_LOG_FORMAT = "%x01%H%x1f%cI%x1f%P%x1f%(trailers:key=Bluegrass-Suspicious,valueonly)%x1f%s"


def history(
    repo: Repository,
    path: bytes,
    *,
    until: str | None = None,
    limit: int = 200,
    skip: int = 0,
    with_changes: bool | None = None,
) -> list[HistoryItem]:
    """Snapshots that changed `path` (a file or folder; ROOT for all), newest first.

    For a file, each item carries the file's change (old and new blob) for diff links; for a
    folder only the commits, as the list of changed files under a big folder can be long.
    `until` starts from that commit instead of the newest.
    """
    start = until or repo.head()
    if start is None:
        return []
    if with_changes is None:
        with_changes = path != ROOT
    args = [
        "--literal-pathspecs",
        "log",
        "--first-parent",
        "--no-renames",
        "-z",
        f"--format={_LOG_FORMAT}",
        f"--max-count={limit}",
        f"--skip={skip}",
    ]
    if with_changes:
        args += ["--raw", "--no-abbrev"]
    args += [start, "--", os.fsdecode(git_path(path))]
    raw = repo.git.run(args).stdout
    items = []
    for fields, tokens in _log_records(raw):
        oid, date, parents, suspicious, summary = fields[0], fields[1], fields[2], fields[3], ""
        summary = "\x1f".join(fields[4:]).strip()
        items.append(
            HistoryItem(
                commit=oid,
                date=datetime.fromisoformat(date),
                summary=summary,
                parent=parents.split()[0] if parents.split() else None,
                suspicious=suspicious.strip() == "yes",
                changes=_changes(tokens) if with_changes else [],
            )
        )
    return items


def changes(repo: Repository, commit: str, *, limit: int = 5000) -> tuple[list[Change], bool]:
    """What one snapshot changed under files/ (real paths), and whether the list was cut."""
    info = snapshot_info(repo, commit)
    args = ["diff-tree", "-r", "-z", "--no-renames", "--no-abbrev"]
    if info.parent is None:
        args.append("--root")
    args += [commit, "--", FILES]
    tokens = repo.git.run(args).stdout.split(b"\0")
    # With one commit, diff-tree prints that commit's id first.
    if tokens and not tokens[0].startswith(b":"):
        tokens = tokens[1:]
    found = _changes(tokens)
    return found[:limit], len(found) > limit


def text_diff(repo: Repository, old_oid: str | None, new_oid: str | None) -> str | None:
    """A unified diff of two blobs, or None when either is binary or too big to show."""
    import difflib

    def text(oid: str | None) -> list[str] | None:
        if oid is None:
            return []
        size = int(repo.git.out(["cat-file", "-s", oid]))
        if size > DIFF_LIMIT:
            return None
        data = repo.read_blob(oid)
        if b"\0" in data[:8192]:
            return None
        return data.decode("utf-8", "replace").splitlines(keepends=True)

    old, new = text(old_oid), text(new_oid)
    if old is None or new is None:
        return None
    return "".join(difflib.unified_diff(old, new, "before", "after", n=3))


# -- search ------------------------------------------------------------------------------


@dataclass
class Found:
    path: bytes
    present: bool  # in the newest snapshot
    last_commit: str  # newest snapshot that holds it
    last_date: datetime
    first_date: datetime


def search(repo: Repository, query: str, *, limit: int = 200) -> list[Found]:
    """Paths whose file name contains `query` (case-insensitive), anywhere in history.

    One `git log --raw --diff-filter=AD` over the branch: every path appears at the
    snapshot that added it and the one that deleted it, which is all a search result needs
    (where to find it, and whether it is still there).
    """
    head = repo.head()
    needle = query.casefold()
    if head is None or not needle:
        return []
    raw = repo.git.run(
        [
            "log",
            "--first-parent",
            "--no-renames",
            "--diff-filter=AD",
            "-z",
            "--raw",
            "--no-abbrev",
            "--format=%x01%H%x1f%cI%x1f%P",
            head,
            "--",
            FILES,
        ]
    ).stdout
    seen: dict[bytes, Found] = {}
    # Oldest first, so a path's latest event is applied last.
    for fields, tokens in reversed(list(_log_records(raw))):
        commit, date, parents = fields[0], datetime.fromisoformat(fields[1]), fields[2].split()
        for change in _changes(tokens):
            name = os.fsdecode(name_of(change.path))
            if needle not in name.casefold():
                continue
            item = seen.get(change.path)
            if change.status == "A":
                if item is None:
                    item = seen[change.path] = Found(change.path, True, commit, date, date)
                item.present, item.last_commit, item.last_date = True, commit, date
            elif change.status == "D" and item is not None and parents:
                item.present, item.last_commit, item.last_date = False, parents[0], date
    results = sorted(seen.values(), key=lambda f: (not f.present, f.path))
    for item in results:
        if item.present:
            item.last_commit = head
    return results[:limit]


# -- blobs -------------------------------------------------------------------------------


def read_head(repo: Repository, oid: str, limit: int) -> bytes:
    """At most `limit` bytes from the start of a blob, without reading the rest."""
    proc = repo.git.popen(["cat-file", "blob", oid], stdin=None)
    assert proc.stdout is not None
    try:
        return proc.stdout.read(limit)
    finally:
        proc.stdout.close()
        proc.kill()
        proc.wait()


def stream_blob(repo: Repository, oid: str, chunk: int = 1 << 16) -> Iterator[bytes]:
    """A blob's bytes in chunks; git streams blobs above core.bigFileThreshold."""
    proc = repo.git.popen(["cat-file", "blob", oid], stdin=None)
    assert proc.stdout is not None
    try:
        yield from iter(lambda: proc.stdout.read(chunk), b"")  # type: ignore[union-attr]
    finally:
        proc.stdout.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    if proc.returncode not in (0, -9):
        raise RepositoryError(f"{repo.path}: cannot read object {oid}")


def select(idx: Index, path: bytes) -> dict[bytes, Entry]:
    """Everything at and under `path`, keyed by real path (ROOT selects the whole segment)."""
    entry = idx.entries.get(path)
    if entry is None:
        return {}
    chosen = {path: entry}
    stack = [path]
    while stack:
        for child in idx.children.get(stack.pop(), []):
            chosen[child] = idx.entries[child]
            if idx.entries[child].kind == "d":
                stack.append(child)
    return chosen
