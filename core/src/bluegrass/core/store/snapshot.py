"""Taking a snapshot: the user's folder as it is now becomes one commit, byte-exact.

The folder is only read. Git is fed explicit paths and blob ids (never `git add` on the tree),
so no .gitignore, .gitattributes or nested repository in it can change what is stored.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from bluegrass.core import diskspace
from bluegrass.core.errors import UsageError
from bluegrass.core.store import manifest as mf
from bluegrass.core.store import statcache
from bluegrass.core.store import walk as walk_mod
from bluegrass.core.store.escaping import RULES_VERSION, escape_path
from bluegrass.core.store.manifest import Entry
from bluegrass.core.store.objects import HashResult, hash_files, write_blob
from bluegrass.core.store.repository import (
    BRANCH,
    FILES,
    MANIFEST,
    ZERO_OID,
    Repository,
    RepositoryError,
    now,
)
from bluegrass.core.store.walk import Stat, Walk, walk

# Given the folder, what the walk saw and the previous snapshot's entries, change the walk in
# place into what is to be stored (the cloud: bluegrass.core.syncmeta.adjust_snapshot).
Adjust = Callable[[bytes, Walk, dict[bytes, Entry]], None]

# Timestamps can be this coarse (FAT, some network file systems): a file modified within this
# window of the snapshot is hashed again next time even if its stat looks the same.
RACY_WINDOW_NS = 2_000_000_000
LIST_LIMIT = 20
DEFAULT_SUSPICIOUS_SHARE = 0.30


@dataclass
class SnapshotResult:
    committed: bool
    commit: str | None  # the new commit, or the current one when nothing changed
    parent: str | None
    when: datetime
    added: int = 0
    changed: int = 0
    deleted: int = 0
    files: int = 0
    bytes: int = 0  # size of every file in the snapshot
    bytes_added: int = 0  # size of the added and changed files
    change_share: float = 0.0
    suspicious: bool = False
    skipped: list[tuple[str, str]] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    unstable: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "committed": self.committed,
            "commit": self.commit,
            "parent": self.parent,
            "date": self.when.isoformat(),
            "added": self.added,
            "changed": self.changed,
            "deleted": self.deleted,
            "files": self.files,
            "bytes": self.bytes,
            "bytes_added": self.bytes_added,
            "change_share": round(self.change_share, 4),
            "suspicious": self.suspicious,
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "unreadable": [{"path": p, "reason": r} for p, r in self.unreadable],
            "changed_while_read": self.unstable,
        }


def _show(path: bytes) -> str:
    return os.fsdecode(path)


def _same_stat(cached: statcache.Cached, st: Stat) -> bool:
    return (
        not cached.racy
        and cached.kind == st.kind
        and cached.mode == st.mode
        and cached.mtime_ns == st.mtime_ns
        and cached.ctime_ns == st.ctime_ns
        and cached.size == st.size
        and cached.ino == st.ino
    )


def snapshot(
    repo: Repository,
    source: Path,
    *,
    when: datetime | None = None,
    suspicious_share: float = DEFAULT_SUSPICIOUS_SHARE,
    label: str | None = None,
    skip: Callable[[bytes], str | None] | None = None,
    adjust: Adjust | None = None,
) -> SnapshotResult:
    """Record `source` in `repo`; commit only if something changed since the last snapshot.

    `skip(name)` may return a reason to leave an entry out (e.g. an upload still in flight);
    it is reported in the result's `skipped`. `adjust` may rewrite what the walk saw before
    anything is hashed (names, kinds, bits, times); it must depend only on the folder, whose
    fingerprint decides whether anything is read at all.
    """
    explicit = when is not None
    when = when or now()
    root = os.fsencode(source.absolute())
    inside = repo.path.resolve()
    folder = source.resolve()
    if inside.is_relative_to(folder) or folder.is_relative_to(inside):
        raise UsageError(
            f"the repository {repo.path} and the folder {source} must not contain each other"
        )
    with repo.lock(), _clean_failure(repo):
        head = repo.head()
        # An explicit date must not go back in time; "now" is checked when a commit is made.
        if head is not None and explicit and when < repo.commit_date(head):
            raise UsageError(
                f"snapshot date {when.isoformat()} is before the last snapshot "
                f"({repo.commit_date(head).isoformat()})"
            )
        result = SnapshotResult(committed=False, commit=head, parent=head, when=when)
        # The fingerprint is taken before anything is read, so a change made while this
        # snapshot runs always shows up as a different fingerprint next time.
        fingerprint = walk_mod.fingerprint(root)
        known = statcache.load_head(repo.state_dir, head)
        if (
            head is not None
            and fingerprint is not None
            and known is not None
            and not known.racy
            and known.fingerprint == fingerprint.hex()
        ):
            result.files, result.bytes = known.files, known.bytes
            result.skipped = [(p, r) for p, r in known.skipped]
            repo.record_check({"at": when.isoformat(), "committed": False, "commit": head})
            return result
        return _snapshot_slow(
            repo, root, head, result, fingerprint, suspicious_share, label, skip, adjust
        )


@contextlib.contextmanager
def _clean_failure(repo: Repository) -> Iterator[None]:
    """A snapshot that fails leaves no temporary file behind, and says why in one line (a
    full disk: which file system) rather than with a traceback; the branch has not moved."""
    # File times come from a coarse kernel clock that can lag time.time() a little.
    started = time.time() - 1.0
    try:
        yield
    except BaseException as exc:
        repo.remove_leftovers(written_since=started)
        if isinstance(exc, OSError):
            where = Path(os.fsdecode(exc.filename)) if exc.filename else repo.path
            if diskspace.is_full(exc):
                raise RepositoryError(diskspace.no_space(where, f"writing {where}")) from exc
            raise RepositoryError(f"{where}: {exc.strerror}") from exc
        raise


def _snapshot_slow(
    repo: Repository,
    root: bytes,
    head: str | None,
    result: SnapshotResult,
    fingerprint: bytes | None,
    suspicious_share: float,
    label: str | None,
    skip: Callable[[bytes], str | None] | None,
    adjust: Adjust | None = None,
) -> SnapshotResult:
    previous, cache = _previous(repo, head)
    start_ns = time.time_ns()
    seen = walk(root, skip)
    if adjust is not None:
        adjust(root, seen, previous)
    result.skipped = [(_show(p), r) for p, r in seen.skipped]
    entries, to_hash, links = _reuse_cached(root, seen, cache)
    hashed = _hash_steadily(repo, seen, to_hash, result)
    unreadable = _add_hashed(repo, root, seen, entries, hashed, links)
    _keep_unreadable(previous, entries, unreadable)
    result.unreadable = [(_show(p), r) for p, r in unreadable]
    unstable = {os.fsencode(p) for p in result.unstable}
    new_cache = _new_cache(seen, entries, unstable, start_ns)
    _count_changes(result, previous, entries, suspicious_share)
    racy_left = bool(unreadable) or any(c.racy for c in new_cache.values())
    if head is not None and _unchanged(previous, entries):
        _save_cache(repo, head, fingerprint, racy_left, result, new_cache)
        repo.record_check({"at": result.when.isoformat(), "committed": False, "commit": head})
        return result
    commit = _commit_and_move(repo, head, previous, entries, result, label)
    _save_cache(repo, commit, fingerprint, racy_left, result, new_cache)
    result.committed = True
    result.commit = commit
    repo.record_check({"at": result.when.isoformat(), "committed": True, "commit": commit})
    return result


def _previous(
    repo: Repository, head: str | None
) -> tuple[dict[bytes, Entry], dict[bytes, statcache.Cached]]:
    """The last snapshot's entries and the stat cache that goes with them (empty when there is
    none: then every file is hashed)."""
    cache = statcache.load(repo.state_dir, head)
    if cache is not None:
        return {p: c.entry() for p, c in cache.items()}, cache
    return (repo.manifest(head) if head else {}), {}


def _reuse_cached(
    root: bytes, seen: Walk, cache: dict[bytes, statcache.Cached]
) -> tuple[dict[bytes, Entry], list[tuple[bytes, bytes, int]], dict[bytes, bytes]]:
    """Folders, and files whose stat the cache vouches for, as entries; the files left to hash
    (relative, absolute, size); the links and their targets."""
    entries: dict[bytes, Entry] = {}
    to_hash: list[tuple[bytes, bytes, int]] = []
    links: dict[bytes, bytes] = {}
    for rel, st in seen.entries.items():
        if st.kind == "d":
            entries[rel] = Entry("d", st.mode, st.mtime_ns, 0, None)
        elif st.kind == "l":
            assert st.link_target is not None
            links[rel] = st.link_target
        else:
            cached = cache.get(rel)
            if cached is not None and _same_stat(cached, st):
                entries[rel] = Entry("f", st.mode, st.mtime_ns, st.size, cached.oid)
            else:
                to_hash.append((rel, root + b"/" + rel, st.size))
    return entries, to_hash, links


def _hash_steadily(
    repo: Repository, seen: Walk, to_hash: list[tuple[bytes, bytes, int]], result: SnapshotResult
) -> HashResult:
    """Hash the files; a file written to while it was read may be torn, so it is read again, a
    few times, and named in `result.unstable` if it never holds still."""
    hashed = hash_files(repo.git, to_hash)
    for _attempt in range(3):
        moved = []
        for rel, path, _size in to_hash:
            if rel not in hashed.oids:
                continue
            try:
                after = os.lstat(path)
            except FileNotFoundError:
                hashed.oids.pop(rel)  # deleted since the walk: not in this snapshot
                seen.entries.pop(rel)
                continue
            st = seen.entries[rel]
            # Not the mtime: `adjust` may have put the device's in its place, and a write
            # moves the ctime anyway (nothing but the kernel sets it).
            if (after.st_ctime_ns, after.st_size, after.st_ino) != (st.ctime_ns, st.size, st.ino):
                st.mtime_ns, st.ctime_ns = after.st_mtime_ns, after.st_ctime_ns
                st.size, st.ino = after.st_size, after.st_ino
                moved.append((rel, path, st.size))
        if not moved:
            break
        again = hash_files(repo.git, moved)
        hashed.oids.update(again.oids)
        hashed.failed.extend(again.failed)
        to_hash = moved
    else:
        result.unstable = sorted(_show(rel) for rel, _, _ in moved)
    return hashed


def _add_hashed(
    repo: Repository,
    root: bytes,
    seen: Walk,
    entries: dict[bytes, Entry],
    hashed: HashResult,
    links: dict[bytes, bytes],
) -> list[tuple[bytes, str]]:
    """Add the hashed files and the links to `entries`; what could not be read, and why."""
    unreadable = list(seen.unreadable)
    for rel, reason in hashed.failed:
        if os.path.lexists(root + b"/" + rel):
            unreadable.append((rel, reason))
        seen.entries.pop(rel, None)
    for rel, oid in hashed.oids.items():
        st = seen.entries.get(rel)
        if st is not None:
            entries[rel] = Entry("f", st.mode, st.mtime_ns, st.size, oid)
    for rel, target in links.items():
        st = seen.entries[rel]
        oid = write_blob(repo.path, target)
        entries[rel] = Entry("l", st.mode, st.mtime_ns, len(target), oid)
    return unreadable


def _keep_unreadable(
    previous: dict[bytes, Entry], entries: dict[bytes, Entry], unreadable: list[tuple[bytes, str]]
) -> None:
    # What could not be read keeps its previous version rather than vanishing from the
    # snapshot: history must never suggest a file was deleted when it was only unreadable.
    for rel, _reason in unreadable:
        prefix = b"" if rel == b"." else rel + b"/"
        for path, entry in previous.items():
            if (path == rel or path.startswith(prefix)) and path not in entries:
                entries[path] = entry


def _new_cache(
    seen: Walk, entries: dict[bytes, Entry], unstable: set[bytes], start_ns: int
) -> dict[bytes, statcache.Cached]:
    """The stat cache for the next snapshot; entries that may change unseen are marked racy."""
    new_cache: dict[bytes, statcache.Cached] = {}
    for rel, entry in entries.items():
        st = seen.entries.get(rel)
        if st is None:  # carried over from the previous snapshot, never seen this time
            new_cache[rel] = statcache.Cached(
                entry.kind, entry.mode, entry.mtime_ns, -1, entry.size, -1, entry.oid, True
            )
            continue
        racy = rel in unstable or max(st.mtime_ns, st.ctime_ns) > start_ns - RACY_WINDOW_NS
        new_cache[rel] = statcache.Cached(
            entry.kind, entry.mode, entry.mtime_ns, st.ctime_ns, entry.size, st.ino, entry.oid, racy
        )
    return new_cache


def _save_cache(
    repo: Repository,
    commit: str,
    fingerprint: bytes | None,
    racy: bool,
    result: SnapshotResult,
    cache: dict[bytes, statcache.Cached],
) -> None:
    """Keep the stat cache and what the fast path needs to answer "unchanged" next time."""
    state = statcache.Head(
        commit=commit,
        fingerprint=fingerprint.hex() if fingerprint else None,
        racy=racy,
        files=result.files,
        bytes=result.bytes,
        skipped=[[p, r] for p, r in result.skipped],
    )
    statcache.save(repo.state_dir, state, cache)


def _commit_and_move(
    repo: Repository,
    head: str | None,
    previous: dict[bytes, Entry],
    entries: dict[bytes, Entry],
    result: SnapshotResult,
    label: str | None,
) -> str:
    """Write the commit, make it durable and move the branch to it; the new commit."""
    if head is not None and result.when < repo.commit_date(head):
        # The clock went back since the last snapshot (an explicit earlier date was refused
        # before): keep history in date order, so "as of a date" still finds the right one.
        result.when = repo.commit_date(head)
    commit, rebuilt = _commit(repo, head, previous, entries, result, result.when, label)
    _make_durable()
    repo.git.run(["update-ref", "-m", "bluegrass snapshot", BRANCH, commit, head or ZERO_OID])
    if rebuilt:
        repo.git.run(["config", "bluegrass.names", RULES_VERSION])
    return commit


def _unchanged(previous: dict[bytes, Entry], entries: dict[bytes, Entry]) -> bool:
    if previous.keys() != entries.keys():
        return False
    return all(previous[p].same_content(e) for p, e in entries.items())


def _count_changes(
    result: SnapshotResult,
    previous: dict[bytes, Entry],
    entries: dict[bytes, Entry],
    suspicious_share: float,
) -> None:
    old_files = {p: e for p, e in previous.items() if e.kind != "d"}
    for path, entry in entries.items():
        if entry.kind == "d":
            continue
        result.files += 1
        if entry.kind == "f":
            result.bytes += entry.size
        before = old_files.get(path)
        new_bytes = entry.size if entry.kind == "f" else 0
        if before is None:
            result.added += 1
            result.bytes_added += new_bytes
        elif not before.same_content(entry):
            result.changed += 1
            result.bytes_added += new_bytes
    result.deleted = sum(1 for p in old_files if p not in entries or entries[p].kind == "d")
    if old_files:
        result.change_share = (result.deleted + result.changed) / len(old_files)
        result.suspicious = result.change_share > suspicious_share


def _tree_records(previous: dict[bytes, Entry], entries: dict[bytes, Entry]) -> list[bytes]:
    """`update-index --index-info` records turning the previous commit's tree into this one.

    Removals come first, so a file that became a folder (or back) never collides with itself.
    Only changed paths are escaped and sent: the index read from the previous tree keeps its
    cached subtree ids, and write-tree re-hashes only the folders that changed.
    """
    prefix = FILES.encode() + b"/"
    removals, additions = [], []
    for path, old in previous.items():
        new = entries.get(path)
        if old.kind != "d" and (new is None or new.kind == "d"):
            removals.append(b"0 %s\t%s%s\0" % (ZERO_OID.encode(), prefix, escape_path(path)))
    for path, new in entries.items():
        if new.kind == "d":
            continue
        old = previous.get(path)
        if (
            old is None
            or old.kind != new.kind
            or old.oid != new.oid
            or old.git_mode != new.git_mode
        ):
            assert new.oid is not None
            additions.append(
                b"%s %s\t%s%s\0"
                % (new.git_mode.encode(), new.oid.encode(), prefix, escape_path(path))
            )
    return removals + additions


def _commit(
    repo: Repository,
    head: str | None,
    previous: dict[bytes, Entry],
    entries: dict[bytes, Entry],
    result: SnapshotResult,
    when: datetime,
    label: str | None,
) -> tuple[str, bool]:
    """The new commit, and whether its tree was built in full under today's naming rules."""
    manifest_oid = write_blob(repo.path, mf.serialize(entries))
    rules = repo.git.run(["config", "--get", "bluegrass.names"], check=False).stdout.strip()
    # Build on the previous tree only if it was written under today's escaping rules.
    incremental = head is not None and rules.decode() == RULES_VERSION
    records = _tree_records(previous if incremental else {}, entries)
    records.append(b"100644 %s\t%s\0" % (manifest_oid.encode(), MANIFEST.encode()))
    index = repo.state_dir / "index.tmp"
    index.unlink(missing_ok=True)
    env = {"GIT_INDEX_FILE": str(index)}
    try:
        if incremental:
            repo.git.run(["read-tree", head], env=env)
        update = repo.git.run(
            ["update-index", "--add", "-z", "--index-info"], input=b"".join(records), env=env
        )
        if b"Ignoring path" in update.stderr:
            # git drops a name it refuses and still succeeds; the escaping must never let that
            # happen, so it is an error rather than a file silently missing from the tree.
            line = update.stderr.decode("utf-8", "replace").strip().splitlines()[0]
            raise RepositoryError(f"{repo.path}: git refused a stored name: {line}")
        tree = repo.git.out(["write-tree"], env=env)
    finally:
        index.unlink(missing_ok=True)
    stamp = f"{int(when.timestamp())} {when.strftime('%z')}"
    args = ["commit-tree", tree]
    if head:
        args += ["-p", head]
    commit = repo.git.out(
        args,
        input=_message(result, label).encode("utf-8", "surrogateescape"),
        env={"GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp},
    )
    return commit, not incremental


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def _message(result: SnapshotResult, label: str | None) -> str:
    counts = f"{result.added} added, {result.changed} changed, {result.deleted} deleted"
    title = f"Snapshot of {label}: {counts}" if label else f"Snapshot: {counts}"
    sizes = f"{_human(result.bytes)}; {_human(result.bytes_added)} new or changed."
    lines = [title, "", f"{result.files} files, {sizes}"]
    if result.suspicious:
        lines.append(
            f"SUSPICIOUS: {result.change_share:.0%} of the previous files were deleted or changed."
        )
    for heading, items in (
        ("Skipped", result.skipped),
        ("Unreadable, previous version kept", result.unreadable),
    ):
        if items:
            lines += ["", f"{heading}:"]
            lines += [f"  {p} ({r})" for p, r in items[:LIST_LIMIT]]
            if len(items) > LIST_LIMIT:
                lines.append(f"  … and {len(items) - LIST_LIMIT} more")
    if result.unstable:
        lines += ["", "Changed while being read (stored as last read):"]
        lines += [f"  {p}" for p in result.unstable[:LIST_LIMIT]]
    lines += [
        "",
        f"Bluegrass-Added: {result.added}",
        f"Bluegrass-Changed: {result.changed}",
        f"Bluegrass-Deleted: {result.deleted}",
        f"Bluegrass-Files: {result.files}",
        f"Bluegrass-Bytes: {result.bytes}",
        f"Bluegrass-Bytes-Added: {result.bytes_added}",
        f"Bluegrass-Skipped: {len(result.skipped)}",
        f"Bluegrass-Unreadable: {len(result.unreadable)}",
        f"Bluegrass-Suspicious: {'yes' if result.suspicious else 'no'}",
    ]
    return "\n".join(lines) + "\n"


def _make_durable() -> None:
    # Loose objects are not fsynced one by one (78k fsyncs would double a first snapshot);
    # one sync before the branch moves guarantees the ref never points at lost objects.
    if hasattr(os, "sync"):
        os.sync()
