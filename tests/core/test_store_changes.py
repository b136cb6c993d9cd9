"""Every kind of change is caught, with the stat cache and the no-change fast path in play.

Files written by a test are seconds old at most, so the store treats them as "racy" and
re-reads them every time, which would hide the cache. Tests marked `aged` set the racy window
to zero: the store then trusts stat data the way it does for a real tree that was last
modified minutes ago, which is the situation the cache and the fast path are for.
"""

from __future__ import annotations

import importlib
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from bluegrass.core.store import Repository, restore, snapshot
from bluegrass.core.store.escaping import unescape_path

from tests.core.conftest import (
    CheckRepo,
    Print,
    assert_same_tree,
    fingerprint,
    git,
    restore_leftovers,
)

snapshot_module = importlib.import_module("bluegrass.core.store.snapshot")


@pytest.fixture(params=["fresh", "aged"])
def aging(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "aged":
        monkeypatch.setattr(snapshot_module, "RACY_WINDOW_NS", 0)
    return request.param


@pytest.fixture
def slow_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the snapshots that walked and compared the whole tree (no fast path)."""
    calls: list[int] = []
    real = snapshot_module._snapshot_slow

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(snapshot_module, "_snapshot_slow", counting)
    return calls


def baseline(src: Path) -> None:
    (src / "docs" / "deep").mkdir(parents=True)
    (src / "empty").mkdir()
    (src / "a.txt").write_bytes(b"AAAA")
    (src / "b.txt").write_bytes(b"BBBB")
    (src / "docs" / "c.txt").write_bytes(b"CCCC")
    (src / "docs" / "deep" / "d.bin").write_bytes(os.urandom(5000))
    os.symlink("a.txt", src / "link")
    os.symlink("docs", src / "dirlink")


def _same_size_rewrite(src: Path) -> None:
    old = os.stat(src / "docs" / "c.txt")
    (src / "docs" / "c.txt").write_bytes(b"XXXX")
    os.utime(src / "docs" / "c.txt", ns=(old.st_atime_ns, old.st_mtime_ns))


def _retarget_link(src: Path) -> None:
    old = os.lstat(src / "link")
    (src / "link").unlink()
    os.symlink("b.txt", src / "link")  # same length as before
    os.utime(src / "link", ns=(old.st_atime_ns, old.st_mtime_ns), follow_symlinks=False)


def _file_to_folder(src: Path) -> None:
    (src / "b.txt").unlink()
    (src / "b.txt").mkdir()
    (src / "b.txt" / "inside").write_bytes(b"now a folder")


def _folder_to_file(src: Path) -> None:
    shutil.rmtree(src / "docs")
    (src / "docs").write_bytes(b"now a file")


def _swap_names(src: Path) -> None:
    (src / "a.txt").rename(src / "tmp")
    (src / "b.txt").rename(src / "a.txt")
    (src / "tmp").rename(src / "b.txt")


def _file_to_link(src: Path) -> None:
    (src / "b.txt").unlink()
    os.symlink("a.txt", src / "b.txt")


def _utime(path: str, ns: int) -> Callable[[Path], None]:
    return lambda src: os.utime(src / path, ns=(ns, ns), follow_symlinks=False)


def _chmod(path: str, mode: int) -> Callable[[Path], None]:
    return lambda src: os.chmod(src / path, mode)


CHANGES: dict[str, Callable[[Path], None]] = {
    "same-size-rewrite-mtime-kept": _same_size_rewrite,
    "touch-file-mtime": _utime("a.txt", 1_000_000_000_000_000_001),
    "touch-link-mtime": _utime("link", 1_000_000_000_000_000_001),
    "chmod-file": _chmod("a.txt", 0o755),
    "chmod-folder": _chmod("docs", 0o700),
    "add-file-deep": lambda src: (src / "docs" / "deep" / "new").write_bytes(b"new"),
    "add-empty-file": lambda src: (src / "docs" / "zero").write_bytes(b""),
    "delete-file": lambda src: (src / "docs" / "deep" / "d.bin").unlink(),
    "rename-file": lambda src: (src / "a.txt").rename(src / "docs" / "a-moved.txt"),
    "swap-two-names": _swap_names,
    "retarget-link-same-length": _retarget_link,
    "file-becomes-folder": _file_to_folder,
    "folder-becomes-file": _folder_to_file,
    "file-becomes-link": _file_to_link,
    "new-empty-folder": lambda src: (src / "docs" / "deep" / "more").mkdir(),
    "remove-empty-folder": lambda src: (src / "empty").rmdir(),
    "hard-link-added": lambda src: os.link(src / "a.txt", src / "a-again.txt"),
    "special-name-added": lambda src: (src / "docs" / ".GIT").write_bytes(b"escaped"),
}


@pytest.mark.parametrize("change", CHANGES)
def test_every_change_is_committed_and_restored(
    repo: Repository,
    src: Path,
    tmp_path: Path,
    aging: str,
    slow_calls: list[int],
    check_repo: CheckRepo,
    change: str,
) -> None:
    baseline(src)
    assert snapshot(repo, src).committed
    assert not snapshot(repo, src).committed
    if aging == "aged":
        assert len(slow_calls) == 1, "an unchanged, aged tree should take the fast path"

    CHANGES[change](src)
    result = snapshot(repo, src)
    assert result.committed, f"{change} was not noticed"
    restore(repo, tmp_path / "out")
    assert_same_tree(fingerprint(src), fingerprint(tmp_path / "out"))
    check_repo(repo)
    assert not snapshot(repo, src).committed  # and the new state is stable


def test_skipped_entries_are_reported_on_every_check(
    repo: Repository, src: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A check that finds nothing new still says what it cannot back up."""
    monkeypatch.setattr(snapshot_module, "RACY_WINDOW_NS", 0)
    (src / "a.txt").write_bytes(b"a")
    os.mkfifo(src / "pipe")
    assert snapshot(repo, src).skipped == [("pipe", "FIFO")]
    again = snapshot(repo, src)
    assert not again.committed
    assert again.skipped == [("pipe", "FIFO")]
    assert again.to_json()["files"] == 1


def test_many_entries_at_the_top_of_a_deep_folder(repo: Repository, tmp_path: Path) -> None:
    """The no-change check must cope with a folder whose entries' full paths add up to more
    than one command line can hold (ARG_MAX, 2 MiB on Linux): a long base path and a few
    thousand names reach it here; a short path and ~100k names do the same."""
    base = tmp_path
    for i in range(14):
        base = base / (f"{i:02d}" + "p" * 198)
    base.mkdir(parents=True)
    src_bytes = os.fsencode(base)
    names = [b"%05d-" % i + b"n" * 200 for i in range(3000)]
    for name in names:
        os.close(os.open(src_bytes + b"/" + name, os.O_CREAT | os.O_WRONLY, 0o644))
    result = snapshot(repo, base)
    assert result.committed and result.files == len(names)
    assert not snapshot(repo, base).committed


# -- a long random history -----------------------------------------------------------------

NAME_POOL = [
    b"a",
    b"b.txt",
    b".git",
    b".GIT",
    b"~1000000",
    b"caf\xe9",
    b"new\nline",
    b"%%x",
    b".gitmodules",
    b"sub",
    b"Sub",
    b"x y",
]


def _entries(root: bytes) -> list[bytes]:
    found = []
    for current, dirs, files in os.walk(root):
        for name in dirs + files:
            found.append(os.path.join(current, name))
    return found


def _mutate(rng: random.Random, root: bytes) -> None:
    entries = _entries(root)
    dirs = [root] + [p for p in entries if os.path.isdir(p) and not os.path.islink(p)]
    files = [p for p in entries if os.path.isfile(p) and not os.path.islink(p)]
    op = rng.choice(
        [
            "new",
            "new",
            "modify",
            "modify",
            "delete",
            "rename",
            "chmod",
            "mkdir",
            "rmtree",
            "link",
            "swap-kind",
            "utime",
        ]
    )
    where = rng.choice(dirs)
    name = where + b"/" + rng.choice(NAME_POOL)
    if op == "new" and not os.path.lexists(name):
        with open(name, "wb") as out:
            out.write(rng.randbytes(rng.choice([0, 1, 100, 5000])))
    elif op == "modify" and files:
        target = rng.choice(files)
        size = os.path.getsize(target)
        with open(target, "r+b") as out:
            out.write(rng.randbytes(max(size, 1)))
    elif op == "delete" and files:
        os.unlink(rng.choice(files))
    elif op == "rename" and files and not os.path.lexists(name):
        os.rename(rng.choice(files), name)
    elif op == "chmod" and files:
        os.chmod(rng.choice(files), rng.choice([0o600, 0o644, 0o755, 0o400]))
    elif op == "mkdir" and not os.path.lexists(name):
        os.mkdir(name)
    elif op == "rmtree" and len(dirs) > 1:
        shutil.rmtree(rng.choice(dirs[1:]))
    elif op == "link" and not os.path.lexists(name):
        os.symlink(rng.choice([b"a", b"../x", b"caf\xe9", b"/abs"]), name)
    elif op == "swap-kind" and files:
        target = rng.choice(files)
        os.unlink(target)
        os.mkdir(target)
        with open(target + b"/inside", "wb") as out:
            out.write(b"was a file")
    elif op == "utime" and entries:
        ns = rng.randrange(0, 2_000_000_000_000_000_000)
        os.utime(rng.choice(entries), ns=(ns, ns), follow_symlinks=False)


def _only_folder_mtimes_differ(old: dict[bytes, Print], new: dict[bytes, Print]) -> bool:
    if old.keys() != new.keys():
        return False
    return all(
        old[p] == new[p] or (old[p][0] == new[p][0] == "d" and old[p][1] == new[p][1]) for p in old
    )


def _tree_matches_manifest(repo: Repository, commit: str) -> None:
    listing = git(f"--git-dir={repo.path}", "ls-tree", "-r", "-z", commit, "files")
    tree = {}
    for record in listing.split(b"\0"):
        if record:
            meta, path = record.split(b"\t", 1)
            mode, _kind, oid = meta.split(b" ")
            tree[unescape_path(path[len(b"files/") :])] = (mode.decode(), oid.decode())
    manifest = {p: (e.git_mode, e.oid) for p, e in repo.manifest(commit).items() if e.kind != "d"}
    assert tree == manifest, f"commit {commit[:12]}: tree and manifest disagree"


@pytest.mark.parametrize("seed", [1, 2])
def test_random_history_restores_every_snapshot(
    repo: Repository, src: Path, tmp_path: Path, aging: str, check_repo: CheckRepo, seed: int
) -> None:
    rng = random.Random(seed)
    root = os.fsencode(src)
    states: dict[str, dict[bytes, Print]] = {}
    last: dict[bytes, Print] | None = None
    for _round in range(25):
        for _ in range(rng.randint(1, 4)):
            _mutate(rng, root)
        now = fingerprint(src)
        result = snapshot(repo, src)
        if result.committed:
            assert result.commit is not None
            states[result.commit] = last = now
        else:
            assert last is not None and _only_folder_mtimes_differ(last, now), (
                "a change was not committed"
            )
    assert len(states) >= 15
    check_repo(repo)
    for i, (commit, state) in enumerate(states.items()):
        _tree_matches_manifest(repo, commit)
        out = tmp_path / f"restore-{i}"
        restore(repo, out, at=commit)
        assert_same_tree(state, fingerprint(out))
    assert restore_leftovers(tmp_path) == []


# -- repositories written by an earlier release ---------------------------------------------


def test_a_tree_written_with_older_escaping_is_repaired(
    repo: Repository, src: Path, monkeypatch: pytest.MonkeyPatch, check_repo: CheckRepo
) -> None:
    """An earlier release stored '~1000000' unescaped (git's fsck rejects it as an NTFS
    short name of .gitmodules). Once the name is escaped, later snapshots must not carry
    the bad entry along forever, nor leave it behind when the folder is deleted."""
    (src / "~1000000").mkdir()
    (src / "~1000000" / "a.txt").write_bytes(b"a")
    (src / "other.txt").write_bytes(b"1")
    with monkeypatch.context() as old_release:
        old_release.setattr(snapshot_module, "escape_path", lambda path: path)
        # ...and recorded its own, older naming rules in the repository.
        old_release.setattr(snapshot_module, "RULES_VERSION", "1")
        assert snapshot(repo, src).committed
    assert repo.verify() != []  # what the older release left

    (src / "other.txt").write_bytes(b"2")
    assert snapshot(repo, src).committed
    # The next tree is rebuilt under today's rules: the name is stored escaped, the raw one
    # is gone (the old commit stays in history as it was: history is never rewritten).
    tree = repo.git.run(["ls-tree", "-r", "-z", "--name-only", "main"]).stdout.split(b"\0")
    assert b"files/%%%7E1000000/a.txt" in tree
    assert b"files/~1000000/a.txt" not in tree
    shutil.rmtree(src / "~1000000")
    assert snapshot(repo, src).committed
    tree = repo.git.run(["ls-tree", "-r", "-z", "--name-only", "main"]).stdout.split(b"\0")
    assert [p for p in tree if b"1000000" in p] == []
    assert repo.verify() == [] or all(
        "1000000" in line or "gitmodules" in line or "gitattributes" in line
        for line in repo.verify()
    )
