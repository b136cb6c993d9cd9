"""Fixtures and helpers for the snapshot store's tests.

Everything here looks at the store from the outside: trees are compared with os.lstat on
bytes paths, repositories are judged by git itself (fsck, a mirror clone that checks every
object), never by the store's own code.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import pytest
from bluegrass.core.store import Repository

# What a tree entry is, for comparing a restore with its source: kind, permission bits,
# mtime in ns, and the content (sha256 of a file, the target of a link, None for a folder).
Print = tuple[str, int, int, bytes | None]
# The same plus every lstat field but atime: to prove a source tree was not touched at all.
FullPrint = tuple[str, int, int, bytes | None, int, int, int, int, int, int]


def git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment in which git reads no configuration but what a command line gives."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_CONFIG_NOSYSTEM="1",
        GIT_TERMINAL_PROMPT="0",
        GIT_AUTHOR_NAME="Test",
        GIT_AUTHOR_EMAIL="test@example.invalid",
        GIT_COMMITTER_NAME="Test",
        GIT_COMMITTER_EMAIL="test@example.invalid",
        LC_ALL="C",
    )
    if extra:
        env.update(extra)
    return env


def run_git(*args: str | bytes, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run git with an isolated configuration, whatever its exit status."""
    return subprocess.run(
        ["git", *args], input=input, capture_output=True, env=git_env(), check=False
    )


def git(*args: str | bytes, input: bytes | None = None, check: bool = True) -> bytes:
    """Run git with an isolated configuration; return its stdout."""
    proc = run_git(*args, input=input)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"git {args!r} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}"
        )
    return proc.stdout


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "f"
    if stat.S_ISDIR(mode):
        return "d"
    if stat.S_ISLNK(mode):
        return "l"
    return "special"


def _content(path: bytes, st: os.stat_result) -> bytes | None:
    if stat.S_ISREG(st.st_mode):
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        return digest.digest()
    if stat.S_ISLNK(st.st_mode):
        return os.readlink(path)
    return None


def _walk(root: bytes) -> Iterable[tuple[bytes, bytes, os.stat_result]]:
    """(relative path, absolute path, lstat) for root (as b".") and everything under it."""
    top = os.lstat(root)
    yield b".", root, top
    stack = [(root, b"")] if stat.S_ISDIR(top.st_mode) else []
    while stack:
        absolute, relative = stack.pop()
        for name in sorted(os.listdir(absolute)):
            path = absolute + b"/" + name
            rel = relative + b"/" + name if relative else name
            st = os.lstat(path)
            yield rel, path, st
            if stat.S_ISDIR(st.st_mode):
                stack.append((path, rel))


def fingerprint(root: Path | bytes) -> dict[bytes, Print]:
    """Every entry under root (root itself as b"."): kind, permission bits, mtime, content."""
    base = os.fsencode(root)
    return {
        rel: (_kind(st.st_mode), stat.S_IMODE(st.st_mode), st.st_mtime_ns, _content(path, st))
        for rel, path, st in _walk(base)
    }


def full_fingerprint(root: Path | bytes) -> dict[bytes, FullPrint]:
    """fingerprint() plus inode, links, owner, size and ctime: any write shows here."""
    base = os.fsencode(root)
    return {
        rel: (
            _kind(st.st_mode),
            st.st_mode,
            st.st_mtime_ns,
            _content(path, st),
            st.st_ctime_ns,
            st.st_ino,
            st.st_nlink,
            st.st_uid,
            st.st_gid,
            st.st_size,
        )
        for rel, path, st in _walk(base)
    }


def assert_same_tree(expected: Mapping[bytes, object], actual: Mapping[bytes, object]) -> None:
    """Equal fingerprints, or a failure that names the paths that differ and how."""
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    differ = sorted(p for p in set(expected) & set(actual) if expected[p] != actual[p])
    lines = [f"missing: {p!r}" for p in missing[:20]]
    lines += [f"unexpected: {p!r}" for p in extra[:20]]
    lines += [f"differs: {p!r}: {expected[p]!r} != {actual[p]!r}" for p in differ[:20]]
    assert not (missing or extra or differ), (
        f"{len(missing)} missing, {len(extra)} unexpected, {len(differ)} different:\n"
        + "\n".join(lines)
    )


def fsck(repo_path: Path) -> subprocess.CompletedProcess[bytes]:
    return run_git(f"--git-dir={repo_path}", "fsck", "--full", "--strict", "--no-progress")


def mirror_clone(repo_path: Path, dest: Path) -> subprocess.CompletedProcess[bytes]:
    """A mirror that checks every object it receives, over the pack protocol (file://)."""
    return subprocess.run(
        [
            "git",
            "-c",
            "transfer.fsckObjects=true",
            "clone",
            "--quiet",
            "--mirror",
            "--no-local",
            repo_path.absolute().as_uri(),
            str(dest),
        ],
        capture_output=True,
        env=git_env(),
        check=False,
    )


def assert_repository_sound(repo: Repository, scratch: Path) -> None:
    """git fsck --strict, a checking mirror clone, and the store's own verify() all pass."""
    checked = fsck(repo.path)
    assert checked.returncode == 0, checked.stderr.decode(errors="replace")
    dest = scratch
    n = 0
    while dest.exists():
        n += 1
        dest = scratch.with_name(f"{scratch.name}-{n}")
    cloned = mirror_clone(repo.path, dest)
    assert cloned.returncode == 0, cloned.stderr.decode(errors="replace")
    head = git(f"--git-dir={repo.path}", "rev-parse", "refs/heads/main")
    assert git(f"--git-dir={dest}", "rev-parse", "refs/heads/main") == head
    assert repo.verify() == []


def restore_leftovers(parent: Path) -> list[str]:
    """Staging folders a restore left behind in `parent`."""
    return sorted(name for name in os.listdir(parent) if ".bluegrass-restore-" in name)


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    """An empty Bluegrass repository outside every source folder."""
    return Repository.init(tmp_path / "repo.git")


@pytest.fixture
def src(tmp_path: Path) -> Path:
    path = tmp_path / "src"
    path.mkdir()
    return path


CheckRepo = Callable[[Repository], None]


@pytest.fixture
def check_repo(tmp_path: Path) -> CheckRepo:
    """check_repo(repo): assert_repository_sound with a fresh clone folder each time."""

    def run(repository: Repository) -> None:
        assert_repository_sound(repository, tmp_path / "mirror.git")

    return run
