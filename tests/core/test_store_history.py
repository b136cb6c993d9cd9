"""Snapshots over time: what counts as a change, the counts, dates, and restoring the past."""

from __future__ import annotations

import importlib
import os
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from bluegrass.core.errors import UsageError
from bluegrass.core.store import Repository, RepositoryError, restore, snapshot

from tests.core.conftest import (
    CheckRepo,
    assert_same_tree,
    fingerprint,
    full_fingerprint,
    git,
    restore_leftovers,
)

snapshot_module = importlib.import_module("bluegrass.core.store.snapshot")


def day(n: int, hour: int = 12) -> datetime:
    """Noon (local time, aware) on 2026-01-n: snapshots dated by the test."""
    return datetime(2026, 1, n, hour, 0, 0).astimezone()


def fill(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def ten_files(src: Path) -> None:
    fill(src, {f"f{i}.txt": b"file %d\n" % i for i in range(10)})


# -- what counts as a change ---------------------------------------------------------------


def test_nothing_changed_means_no_commit_but_a_check(
    repo: Repository, src: Path, check_repo: CheckRepo
) -> None:
    fill(src, {"a.txt": b"a", "sub/b.txt": b"b"})
    first = snapshot(repo, src)
    assert first.committed
    checks = len(repo.checks())
    again = snapshot(repo, src)
    assert not again.committed
    assert again.commit == first.commit
    assert (again.added, again.changed, again.deleted) == (0, 0, 0)
    assert len(repo.log()) == 1
    assert len(repo.checks()) == checks + 1
    assert repo.checks()[-1]["committed"] is False
    assert repo.checks()[-1]["commit"] == first.commit
    check_repo(repo)


def test_first_snapshot_of_an_empty_folder_commits(repo: Repository, src: Path) -> None:
    result = snapshot(repo, src)
    assert result.committed
    assert (result.files, result.added) == (0, 0)
    assert repo.verify() == []


def test_touching_only_the_mtime_is_a_change(repo: Repository, src: Path, tmp_path: Path) -> None:
    fill(src, {"a.txt": b"same bytes", "b.txt": b"other"})
    snapshot(repo, src, when=day(1))
    os.utime(src / "a.txt", ns=(1_500_000_000_123_456_789, 1_500_000_000_123_456_789))
    result = snapshot(repo, src, when=day(2))
    assert result.committed
    restore(repo, tmp_path / "out")
    assert os.lstat(tmp_path / "out" / "a.txt").st_mtime_ns == 1_500_000_000_123_456_789
    # A commit that says "0 changed" would hide it: the touched file counts as changed, as a
    # chmod does.
    assert (result.added, result.changed, result.deleted) == (0, 1, 0)
    assert repo.log()[0].stats["changed"] == 1


def test_chmod_only_is_a_change(repo: Repository, src: Path) -> None:
    fill(src, {"a.sh": b"#!/bin/sh\n"})
    snapshot(repo, src, when=day(1))
    os.chmod(src / "a.sh", 0o750)
    result = snapshot(repo, src, when=day(2))
    assert result.committed
    assert result.changed == 1
    assert repo.manifest(result.commit)[b"a.sh"].mode == 0o750


def test_new_empty_folder_is_a_change(repo: Repository, src: Path, tmp_path: Path) -> None:
    fill(src, {"a.txt": b"a"})
    snapshot(repo, src, when=day(1))
    (src / "new" / "deeper").mkdir(parents=True)
    assert snapshot(repo, src, when=day(2)).committed
    restore(repo, tmp_path / "out")
    assert (tmp_path / "out" / "new" / "deeper").is_dir()


def test_a_folder_mtime_alone_is_not_a_change(repo: Repository, src: Path) -> None:
    """Documented in manifest.Entry.same_content: temporary files move folder mtimes."""
    fill(src, {"sub/a.txt": b"a"})
    snapshot(repo, src, when=day(1))
    (src / "sub" / "tmp").write_bytes(b"x")
    (src / "sub" / "tmp").unlink()
    assert not snapshot(repo, src, when=day(2)).committed


def test_counts_in_result_and_log(repo: Repository, src: Path, check_repo: CheckRepo) -> None:
    fill(src, {f"f{i}.txt": b"file %d\n" % i for i in range(20)})
    os.symlink("f0.txt", src / "link")
    first = snapshot(repo, src, when=day(1))
    assert (first.added, first.changed, first.deleted, first.files) == (21, 0, 0, 21)

    (src / "f1.txt").write_bytes(b"changed content\n")  # changed
    (src / "f2.txt").unlink()  # deleted
    (src / "f3.txt").rename(src / "renamed.txt")  # renamed: one deleted, one added
    fill(src, {"new/added.txt": b"added\n"})  # added
    (src / "link").unlink()
    os.symlink("f4.txt", src / "link")  # a link pointing elsewhere is changed
    result = snapshot(repo, src, when=day(2))

    assert result.committed
    assert (result.added, result.changed, result.deleted) == (2, 2, 2)
    assert result.files == 21
    assert result.bytes_added == len(b"changed content\n") + len(b"file 3\n") + len(b"added\n")
    stats = repo.log()[0].stats
    assert (stats["added"], stats["changed"], stats["deleted"], stats["files"]) == (2, 2, 2, 21)
    assert repo.log()[0].to_json()["added"] == 2
    json = result.to_json()
    assert (json["added"], json["changed"], json["deleted"]) == (2, 2, 2)
    assert json["committed"] is True and json["commit"] == repo.log()[0].commit
    check_repo(repo)


# -- mass change ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("deleted", "changed", "suspicious"),
    [(2, 0, False), (3, 0, False), (4, 0, True), (0, 3, False), (0, 4, True), (2, 2, True)],
)
def test_suspicious_above_thirty_percent(
    repo: Repository, src: Path, deleted: int, changed: int, suspicious: bool
) -> None:
    ten_files(src)
    snapshot(repo, src, when=day(1))
    for i in range(deleted):
        (src / f"f{i}.txt").unlink()
    for i in range(9, 9 - changed, -1):
        (src / f"f{i}.txt").write_bytes(b"rewritten %d\n" % i)
    result = snapshot(repo, src, when=day(2))
    assert result.committed
    assert result.suspicious is suspicious
    assert repo.log()[0].suspicious is suspicious
    assert repo.log()[0].to_json()["suspicious"] is suspicious
    assert result.to_json()["suspicious"] is suspicious
    assert result.change_share == pytest.approx((deleted + changed) / 10)


def test_suspicious_share_is_a_parameter(repo: Repository, src: Path) -> None:
    ten_files(src)
    snapshot(repo, src, when=day(1))
    (src / "f0.txt").unlink()
    (src / "f1.txt").unlink()
    assert snapshot(repo, src, when=day(2), suspicious_share=0.15).suspicious
    (src / "f2.txt").unlink()
    assert not snapshot(repo, src, when=day(3), suspicious_share=0.5).suspicious


def test_everything_deleted_keeps_history(repo: Repository, src: Path, tmp_path: Path) -> None:
    ten_files(src)
    first = snapshot(repo, src, when=day(1))
    for path in src.iterdir():
        path.unlink()
    result = snapshot(repo, src, when=day(2))
    assert result.committed and result.suspicious and result.deleted == 10
    restore(repo, tmp_path / "old", at=first.commit)
    assert sorted(os.listdir(tmp_path / "old")) == [f"f{i}.txt" for i in range(10)]


# -- dates and restoring the past ----------------------------------------------------------


def history(repo: Repository, src: Path) -> list[str]:
    """Three dated snapshots of one file; the commit ids, oldest first."""
    commits = []
    for n in (1, 2, 3):
        (src / "doc.txt").write_bytes(b"version %d\n" % n)
        (src / f"only-in-{n}.txt").write_bytes(b"%d" % n)
        if n > 1:
            (src / f"only-in-{n - 1}.txt").unlink()
        result = snapshot(repo, src, when=day(n))
        assert result.committed
        commits.append(result.commit)
    return commits


def test_log_is_newest_first_with_dates(repo: Repository, src: Path) -> None:
    commits = history(repo, src)
    log = repo.log()
    assert [c.commit for c in log] == commits[::-1]
    assert [c.date for c in log] == [day(3), day(2), day(1)]
    assert log[0].to_json()["date"] == day(3).isoformat()


@pytest.mark.parametrize("short", [False, True])
def test_restore_at_an_older_commit(
    repo: Repository, src: Path, tmp_path: Path, short: bool
) -> None:
    commits = history(repo, src)
    at = commits[0][:10] if short else commits[0]
    result = restore(repo, tmp_path / "old", at=at)
    assert result.commit == commits[0]
    assert sorted(os.listdir(tmp_path / "old")) == ["doc.txt", "only-in-1.txt"]
    assert (tmp_path / "old" / "doc.txt").read_bytes() == b"version 1\n"


@pytest.mark.parametrize(
    ("at", "version"),
    [
        ("2026-01-01", 1),
        ("2026-01-02", 2),
        ("2026-01-02 11:00", 1),
        ("2026-01-03", 3),
        ("2026-02-01", 3),
    ],
)
def test_restore_at_a_date(
    repo: Repository, src: Path, tmp_path: Path, at: str, version: int
) -> None:
    history(repo, src)
    restore(repo, tmp_path / "then", at=at)
    assert (tmp_path / "then" / "doc.txt").read_bytes() == b"version %d\n" % version
    assert (tmp_path / "then" / f"only-in-{version}.txt").exists()


def test_restore_at_an_aware_iso_date(repo: Repository, src: Path, tmp_path: Path) -> None:
    history(repo, src)
    at = (day(2) + timedelta(minutes=1)).isoformat()
    restore(repo, tmp_path / "then", at=at)
    assert (tmp_path / "then" / "doc.txt").read_bytes() == b"version 2\n"


def test_date_before_the_first_snapshot_is_an_error(
    repo: Repository, src: Path, tmp_path: Path
) -> None:
    history(repo, src)
    with pytest.raises(RepositoryError):
        restore(repo, tmp_path / "never", at="2025-12-31")
    with pytest.raises(RepositoryError):
        repo.resolve("2026-01-01 11:59")
    assert not (tmp_path / "never").exists()
    assert restore_leftovers(tmp_path) == []


@pytest.mark.parametrize("at", ["not a date", "0" * 40, "2026-13-45"])
def test_unknown_revision_is_an_error(repo: Repository, src: Path, tmp_path: Path, at: str) -> None:
    history(repo, src)
    with pytest.raises(RepositoryError):
        restore(repo, tmp_path / "x", at=at)


def test_commit_of_another_repository_is_refused(
    repo: Repository, src: Path, tmp_path: Path
) -> None:
    history(repo, src)
    other = Repository.init(tmp_path / "other.git")
    foreign = snapshot(other, src, when=day(5)).commit
    assert foreign is not None
    # Copy the foreign objects in, so only the history check can refuse it.
    git(f"--git-dir={repo.path}", "fetch", "--quiet", str(other.path), "main:refs/foreign")
    with pytest.raises(RepositoryError):
        restore(repo, tmp_path / "x", at=foreign)


def test_no_snapshot_yet_is_an_error(repo: Repository, tmp_path: Path) -> None:
    with pytest.raises(RepositoryError):
        restore(repo, tmp_path / "x")
    assert repo.log() == []


def test_snapshot_dated_before_the_last_is_refused(repo: Repository, src: Path) -> None:
    fill(src, {"a.txt": b"a"})
    snapshot(repo, src, when=day(3))
    (src / "a.txt").write_bytes(b"b")
    with pytest.raises(UsageError):
        snapshot(repo, src, when=day(2))
    assert len(repo.log()) == 1
    # The same instant as the last one is not "before" it.
    assert snapshot(repo, src, when=day(3)).committed


def test_a_second_writer_is_refused_at_once(repo: Repository, src: Path) -> None:
    fill(src, {"a.txt": b"a"})
    with repo.lock(), pytest.raises(RepositoryError):
        snapshot(repo, src)
    assert repo.log() == []


# -- restoring part of a snapshot, and where ----------------------------------------------


@pytest.fixture
def tree(src: Path) -> Path:
    fill(
        src,
        {
            "docs/sub/a.txt": b"a",
            "docs/sub/deeper/b.bin": os.urandom(3000),
            "docs/top.txt": b"top",
            "other.txt": b"other",
        },
    )
    os.symlink("a.txt", src / "docs" / "sub" / "link")
    (src / "docs" / "sub" / "empty").mkdir()
    os.chmod(src / "docs" / "sub" / "a.txt", 0o640)
    os.utime(src / "docs" / "sub" / "a.txt", ns=(1_000_000_000_123_456_789,) * 2)
    os.utime(src / "docs" / "sub", ns=(1_100_000_000_987_654_321,) * 2)
    os.chmod(src / "docs" / "sub", 0o750)
    return src


def test_restore_a_folder(repo: Repository, tree: Path, tmp_path: Path) -> None:
    snapshot(repo, tree)
    result = restore(repo, tmp_path / "out", path="docs/sub")
    assert_same_tree(fingerprint(tree / "docs" / "sub"), fingerprint(tmp_path / "out"))
    assert result.files == 2
    assert restore_leftovers(tmp_path) == []


@pytest.mark.parametrize("path", ["docs/sub/a.txt", "/docs/sub/a.txt", "docs/sub/link"])
def test_restore_a_file_or_link(repo: Repository, tree: Path, tmp_path: Path, path: str) -> None:
    snapshot(repo, tree)
    restore(repo, tmp_path / "out", path=path)
    name = path.rsplit("/", 1)[-1]
    assert os.listdir(tmp_path / "out") == [name]
    expected = fingerprint(tree / path.lstrip("/"))
    assert fingerprint(tmp_path / "out" / name) == expected


def test_restore_into_an_existing_empty_folder(
    repo: Repository, tree: Path, tmp_path: Path
) -> None:
    snapshot(repo, tree)
    (tmp_path / "out").mkdir()
    restore(repo, tmp_path / "out")
    assert_same_tree(fingerprint(tree), fingerprint(tmp_path / "out"))


@pytest.mark.parametrize(
    "path", ["nope", "docs/nope.txt", "../etc", "docs/../other.txt", "docs//sub"]
)
def test_restore_of_a_path_not_in_the_snapshot(
    repo: Repository, tree: Path, tmp_path: Path, path: str
) -> None:
    snapshot(repo, tree)
    with pytest.raises(UsageError):
        restore(repo, tmp_path / "out", path=path)
    assert not (tmp_path / "out").exists()
    assert restore_leftovers(tmp_path) == []


@pytest.mark.parametrize("kind", ["non-empty folder", "file", "symlink"])
def test_restore_refuses_an_occupied_target_and_writes_nothing(
    repo: Repository, tree: Path, tmp_path: Path, kind: str
) -> None:
    snapshot(repo, tree)
    parent = tmp_path / "parent"
    parent.mkdir()
    target = parent / "target"
    if kind == "non-empty folder":
        target.mkdir()
        (target / "mine.txt").write_bytes(b"keep me")
    elif kind == "file":
        target.write_bytes(b"keep me")
    else:
        os.symlink(tmp_path / "elsewhere", target)
    before = full_fingerprint(parent)
    with pytest.raises(UsageError):
        restore(repo, target)
    assert_same_tree(before, full_fingerprint(parent))
    assert not (tmp_path / "elsewhere").exists()


def test_restore_does_not_change_the_repository(
    repo: Repository, tree: Path, tmp_path: Path
) -> None:
    snapshot(repo, tree)
    before = full_fingerprint(repo.path)
    restore(repo, tmp_path / "out")
    restore(repo, tmp_path / "out2", path="docs")
    assert_same_tree(before, full_fingerprint(repo.path))


def _loose_object(repo: Repository, oid: str) -> Path:
    path = repo.path / "objects" / oid[:2] / oid[2:]
    assert path.is_file(), "expected a loose object"
    return path


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_failed_restore_leaves_nothing_behind(
    repo: Repository, tree: Path, tmp_path: Path, damage: str
) -> None:
    result = snapshot(repo, tree)
    oid = repo.manifest(result.commit)[b"docs/sub/deeper/b.bin"].oid
    assert oid is not None
    loose = _loose_object(repo, oid)
    if damage == "missing":
        loose.unlink()
    else:
        loose.chmod(0o644)
        loose.write_bytes(b"\x78\x9c garbage, not zlib")
    parent = tmp_path / "restores"
    target = parent / "target"
    with pytest.raises(RepositoryError):
        restore(repo, target)
    assert not target.exists()
    # the parent folder was made by this restore, so it is removed again with the staging
    assert not parent.exists() or restore_leftovers(parent) == []
    assert not parent.exists()
    assert repo.verify() != []  # and verify() notices the damage


# -- the stat cache ------------------------------------------------------------------------


def test_same_size_same_mtime_rewrite_is_seen(repo: Repository, src: Path, tmp_path: Path) -> None:
    fill(src, {"a.txt": b"AAAA", "b.txt": b"BBBB"})
    snapshot(repo, src)
    old = os.stat(src / "a.txt")
    (src / "a.txt").write_bytes(b"CCCC")
    os.utime(src / "a.txt", ns=(old.st_atime_ns, old.st_mtime_ns))
    new = os.stat(src / "a.txt")
    assert (new.st_size, new.st_mtime_ns) == (old.st_size, old.st_mtime_ns)
    assert new.st_ctime_ns != old.st_ctime_ns
    result = snapshot(repo, src)
    assert result.committed and result.changed == 1
    restore(repo, tmp_path / "out")
    assert (tmp_path / "out" / "a.txt").read_bytes() == b"CCCC"


def test_stat_cache_is_used_and_still_sees_a_ctime_change(
    repo: Repository, src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With files older than the racy window, unchanged files are not read again, yet a
    rewrite that keeps size and mtime is caught by its ctime."""
    monkeypatch.setattr(snapshot_module, "RACY_WINDOW_NS", 0)
    hashed: list[set[bytes]] = []
    real = snapshot_module.hash_files

    def spy(git: object, items: list[tuple[bytes, bytes, int]], *args: object) -> object:
        hashed.append({rel for rel, _path, _size in items})
        return real(git, items, *args)

    monkeypatch.setattr(snapshot_module, "hash_files", spy)
    fill(src, {"a.txt": b"AAAA", "b.txt": b"BBBB"})
    snapshot(repo, src)
    assert hashed[-1] == {b"a.txt", b"b.txt"}

    hashed.clear()
    assert not snapshot(repo, src).committed
    assert hashed in ([], [set()])  # the cache answered for both files

    old = os.stat(src / "a.txt")
    (src / "a.txt").write_bytes(b"CCCC")
    os.utime(src / "a.txt", ns=(old.st_atime_ns, old.st_mtime_ns))
    hashed.clear()
    result = snapshot(repo, src)
    assert {b"a.txt"} in hashed and not any(b"b.txt" in h for h in hashed)
    assert result.committed and result.changed == 1
    restore(repo, tmp_path / "out")
    assert (tmp_path / "out" / "a.txt").read_bytes() == b"CCCC"
    assert (tmp_path / "out" / "b.txt").read_bytes() == b"BBBB"


def test_file_replaced_by_same_size_and_mtime_is_seen(
    repo: Repository, src: Path, tmp_path: Path
) -> None:
    """A file swapped for another of the same size and mtime (a new inode) is read again."""
    fill(src, {"a.txt": b"AAAA"})
    snapshot(repo, src)
    old = os.stat(src / "a.txt")
    (src / "tmp").write_bytes(b"ZZZZ")
    os.utime(src / "tmp", ns=(old.st_atime_ns, old.st_mtime_ns))
    os.replace(src / "tmp", src / "a.txt")
    assert snapshot(repo, src).committed
    restore(repo, tmp_path / "out")
    assert (tmp_path / "out" / "a.txt").read_bytes() == b"ZZZZ"


# -- paths given relative to the working directory ----------------------------------------


def test_relative_repository_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, check_repo: CheckRepo
) -> None:
    monkeypatch.chdir(tmp_path)
    src = tmp_path / "src"
    fill(src, {"a.txt": b"a"})
    repo = Repository.init(Path("rel.git"))
    result = snapshot(repo, src)
    assert result.committed
    assert not (tmp_path / "rel.git" / "rel.git").exists()
    restore(repo, Path("out"))
    assert (tmp_path / "out" / "a.txt").read_bytes() == b"a"
    check_repo(repo)


def test_relative_source_path(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    fill(tmp_path / "src", {"a.txt": b"a", "sub/b.txt": b"b"})
    result = snapshot(repo, Path("src"))
    assert result.unreadable == []
    assert result.files == 2
    restore(repo, tmp_path / "out")
    assert (tmp_path / "out" / "sub" / "b.txt").read_bytes() == b"b"
