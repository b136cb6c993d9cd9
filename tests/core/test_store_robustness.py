"""Files that move under a snapshot, interrupted snapshots, damaged state, repository upkeep."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from bluegrass.core.errors import BluegrassError, UsageError
from bluegrass.core.store import Repository, RepositoryError, restore, snapshot

from tests.core.conftest import CheckRepo, assert_same_tree, fingerprint, git

snapshot_module = importlib.import_module("bluegrass.core.store.snapshot")
statcache_module = importlib.import_module("bluegrass.core.store.statcache")


Hook = Callable[[int], None] | None


def _hook_hashing(
    monkeypatch: pytest.MonkeyPatch, before: Hook = None, after: Hook = None
) -> list[int]:
    """Run `before(n)` / `after(n)` around the n-th call of the store's file hashing."""
    calls: list[int] = []
    real = snapshot_module.hash_files

    def hooked(git_: object, items: list[tuple[bytes, bytes, int]], *args: object) -> object:
        n = len(calls)
        calls.append(n)
        if before:
            before(n)
        found = real(git_, items, *args)
        if after:
            after(n)
        return found

    monkeypatch.setattr(snapshot_module, "hash_files", hooked)
    return calls


def test_file_written_while_read_is_read_again(
    repo: Repository, src: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (src / "log.txt").write_bytes(b"first line\n")

    def append_once(n: int) -> None:
        if n == 0:
            with (src / "log.txt").open("ab") as out:
                out.write(b"second line\n")

    calls = _hook_hashing(monkeypatch, after=append_once)
    result = snapshot(repo, src)
    assert len(calls) >= 2, "the changed file was not read again"
    assert result.unstable == []
    restore(repo, tmp_path / "out")
    assert_same_tree(fingerprint(src), fingerprint(tmp_path / "out"))


def test_file_that_never_settles_is_reported_and_read_next_time(
    repo: Repository, src: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (src / "busy.txt").write_bytes(b"0\n")
    (src / "calm.txt").write_bytes(b"calm\n")

    def keep_writing(n: int) -> None:
        with (src / "busy.txt").open("ab") as out:
            out.write(b"%d\n" % (n + 1))

    with monkeypatch.context() as patch:
        _hook_hashing(patch, after=keep_writing)
        result = snapshot(repo, src)
    assert result.committed
    assert result.unstable == ["busy.txt"]
    assert result.to_json()["changed_while_read"] == ["busy.txt"]
    # Quiet now: the next snapshot reads it again and stores what is there.
    again = snapshot(repo, src)
    assert again.commit is not None
    assert repo.read_blob(f"{again.commit}:files/busy.txt") == (src / "busy.txt").read_bytes()
    restore(repo, tmp_path / "out")
    assert_same_tree(fingerprint(src), fingerprint(tmp_path / "out"))


def test_file_deleted_during_the_snapshot_is_simply_absent(
    repo: Repository, src: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (src / "keep.txt").write_bytes(b"keep\n")
    (src / "gone.txt").write_bytes(b"gone soon\n")

    def delete(n: int) -> None:
        if n == 0:
            (src / "gone.txt").unlink()

    _hook_hashing(monkeypatch, before=delete)
    result = snapshot(repo, src)
    assert result.committed and result.commit is not None
    assert result.unreadable == []
    assert set(repo.manifest(result.commit)) == {b".", b"keep.txt"}
    assert repo.verify() == []


def test_interrupted_after_the_commit_before_the_cache(
    repo: Repository, src: Path, monkeypatch: pytest.MonkeyPatch, check_repo: CheckRepo
) -> None:
    """A crash between moving the branch and saving the stat cache loses nothing and does
    not make the next snapshot trust a stale cache."""
    (src / "a.txt").write_bytes(b"one")
    snapshot(repo, src)
    (src / "a.txt").write_bytes(b"two")

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(statcache_module, "save", crash)
        with pytest.raises(KeyboardInterrupt):
            snapshot(repo, src)
    assert len(repo.log()) == 2  # the commit itself was made
    (src / "a.txt").write_bytes(b"3ee")  # same size as "two"
    result = snapshot(repo, src)
    assert result.committed
    assert repo.read_blob(f"{result.commit}:files/a.txt") == b"3ee"
    assert not snapshot(repo, src).committed
    check_repo(repo)


@pytest.mark.parametrize("damage", ["garbage", "empty", "other-commit"])
def test_damaged_stat_cache_is_ignored(
    repo: Repository,
    src: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    damage: str,
) -> None:
    monkeypatch.setattr(snapshot_module, "RACY_WINDOW_NS", 0)
    (src / "a.txt").write_bytes(b"AAAA")
    (src / "b.txt").write_bytes(b"BBBB")
    snapshot(repo, src)
    cache_files = [p for p in repo.state_dir.iterdir() if p.name.startswith("statcache")]
    assert cache_files, "expected the stat cache beside the repository"
    saved = {p: p.read_bytes() for p in cache_files}
    (src / "b.txt").write_bytes(b"CCCC")
    snapshot(repo, src)
    for path, data in saved.items():
        if damage == "garbage":
            path.write_bytes(b"\x00garbage\xff" * 7)
        elif damage == "empty":
            path.write_bytes(b"")
        else:  # a cache that vouches for the first commit, now stale
            path.write_bytes(data)
    old = os.stat(src / "a.txt")
    (src / "a.txt").write_bytes(b"ZZZZ")
    os.utime(src / "a.txt", ns=(old.st_atime_ns, old.st_mtime_ns))
    result = snapshot(repo, src)
    assert result.committed
    restore(repo, tmp_path / "out")
    assert_same_tree(fingerprint(src), fingerprint(tmp_path / "out"))


def test_missing_source_commits_nothing(repo: Repository, src: Path, tmp_path: Path) -> None:
    (src / "a.txt").write_bytes(b"a")
    snapshot(repo, src)
    with pytest.raises((OSError, BluegrassError)):
        snapshot(repo, tmp_path / "no-such-folder")
    assert len(repo.log()) == 1


# -- the repository itself -----------------------------------------------------------------


def test_init_refuses_a_folder_that_is_not_a_repository(tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "something").write_bytes(b"x")
    with pytest.raises(RepositoryError):
        Repository.init(tmp_path / "busy")
    assert os.listdir(tmp_path / "busy") == ["something"]


def test_open_refuses_a_plain_git_repository(tmp_path: Path) -> None:
    git("init", "--quiet", "--bare", str(tmp_path / "plain.git"))
    with pytest.raises(RepositoryError):
        Repository.open(tmp_path / "plain.git")
    with pytest.raises(RepositoryError):
        Repository.open(tmp_path / "nothing.git")


def test_verify_finds_changed_settings_and_init_repairs_them(repo: Repository, src: Path) -> None:
    (src / "a.txt").write_bytes(b"a")
    snapshot(repo, src)
    assert repo.verify() == []
    git(f"--git-dir={repo.path}", "config", "core.bigFileThreshold", "1g")
    (repo.path / "info" / "attributes").write_text("* text eol=crlf\n")
    problems = repo.verify()
    assert any("core.bigFileThreshold" in p for p in problems)
    assert any("attributes" in p for p in problems)
    Repository.init(repo.path)
    assert repo.verify() == []


def test_settings_a_mirror_relies_on(repo: Repository) -> None:
    def get(key: str) -> str:
        return git(f"--git-dir={repo.path}", "config", "--get", key).decode().strip()

    assert get("core.bigFileThreshold").lower() in ("16m", "32m", "64m")
    assert get("receive.denyNonFastForwards") == "true"
    assert get("receive.denyDeletes") == "true"
    attributes = (repo.path / "info" / "attributes").read_text()
    for word in ("-text", "-eol", "-crlf", "-filter", "-ident", "-export-ignore", "-export-subst"):
        assert word in attributes.split()


def test_maintain_keeps_every_snapshot(
    repo: Repository, src: Path, tmp_path: Path, check_repo: CheckRepo
) -> None:
    (src / "a.txt").write_bytes(b"one")
    first = snapshot(repo, src)
    (src / "a.txt").write_bytes(b"two")
    snapshot(repo, src)
    repo.maintain()
    check_repo(repo)
    restore(repo, tmp_path / "old", at=first.commit)
    assert (tmp_path / "old" / "a.txt").read_bytes() == b"one"
    assert not list((repo.path / "objects").glob("[0-9a-f][0-9a-f]/*"))  # all packed
    assert not snapshot(repo, src).committed


def test_restore_refuses_a_snapshot_whose_manifest_is_damaged(
    repo: Repository, src: Path, tmp_path: Path
) -> None:
    (src / "a.txt").write_bytes(b"a")
    result = snapshot(repo, src)
    manifest_oid = git(
        f"--git-dir={repo.path}", "rev-parse", f"{result.commit}:bluegrass-manifest"
    ).decode()
    loose = repo.path / "objects" / manifest_oid[:2] / manifest_oid[2:].strip()
    loose.unlink()
    with pytest.raises(BluegrassError):
        restore(repo, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_repository_inside_the_source_is_refused(tmp_path: Path) -> None:
    """A repository kept inside the folder it backs up would write its lock, cache and new
    objects into that folder on every snapshot and store itself, growing without end."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_bytes(b"a")
    repo = Repository.init(src / "history.git")
    with pytest.raises(UsageError):
        snapshot(repo, src)
    assert repo.log() == []


def _commit_manifest(repo: Repository, records: dict[bytes, tuple[str, bytes | None]]) -> str:
    """A snapshot commit made by hand (docs/repository-format.md) whose manifest lists
    `records`: path -> (kind, content); the tree holds only the manifest. This is what a
    broken or hostile server could hand a mirror: every object in it is valid to git."""
    manifest = b"bluegrass-manifest 1\0"
    for path in sorted(records):
        kind, content = records[path]
        if kind == "d":
            manifest += b"d 755 0 0 -\t%s\0" % path
        else:
            assert content is not None
            oid = git(f"--git-dir={repo.path}", "hash-object", "-w", "--stdin", input=content)
            mode = b"777" if kind == "l" else b"644"
            manifest += b"%s %s 0 %d %s\t%s\0" % (
                kind.encode(),
                mode,
                len(content),
                oid.strip(),
                path,
            )
    blob = git(f"--git-dir={repo.path}", "hash-object", "-w", "--stdin", input=manifest)
    tree = git(
        f"--git-dir={repo.path}",
        "mktree",
        input=b"100644 blob %s\tbluegrass-manifest\n" % blob.strip(),
    )
    head = repo.head()
    assert head is not None
    commit = (
        git(f"--git-dir={repo.path}", "commit-tree", tree.strip().decode(), "-p", head, "-m", "x")
        .decode()
        .strip()
    )
    git(f"--git-dir={repo.path}", "update-ref", "refs/heads/main", commit)
    return commit


@pytest.mark.parametrize(
    "path", [b"../escaped.txt", b"../../escaped.txt", b"sub/../../../escaped.txt"]
)
def test_restore_never_writes_outside_the_target(
    repo: Repository, src: Path, tmp_path: Path, path: bytes
) -> None:
    """A manifest whose paths climb out of the snapshot is refused, not followed."""
    (src / "a.txt").write_bytes(b"a")
    snapshot(repo, src)
    _commit_manifest(
        repo, {b".": ("d", None), b"sub": ("d", None), path: ("f", b"written outside\n")}
    )
    parent = tmp_path / "restores" / "deeper"
    parent.mkdir(parents=True)
    with pytest.raises(BluegrassError):
        restore(repo, parent / "target")
    escaped = [str(p) for p in tmp_path.rglob("escaped.txt")]
    assert escaped == []
    assert not (parent / "target").exists()
