"""What the drills on a running system found: commits killed half-way, temporary files left.

A killed commit is reproduced with a real git process stopped by SIGKILL while it holds the
lock git takes for that step, which is exactly what a kill of the whole commit leaves.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from bluegrass.core.store import Repository, snapshot

from tests.core.conftest import fsck, git, git_env


def wait_until(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def killed_holding(
    argv: list[str], lock: Path, repo: Path, env: dict[str, str], feed: bytes
) -> None:
    """Start git, wait until it holds `lock`, and SIGKILL it there."""
    proc = subprocess.Popen(
        ["git", *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=git_env({"GIT_DIR": str(repo), **env}),
        cwd=repo,
    )
    assert proc.stdin is not None
    if feed:
        proc.stdin.write(feed)
        proc.stdin.flush()
    # git waits for more input with its lock taken: a kill now is a kill at the lock step.
    wait_until(lock.exists, f"git {argv[0]} to take {lock.name}")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdin.close()
    assert lock.exists()


def test_a_commit_killed_while_git_holds_the_index_lock_does_not_stop_the_next(
    repo: Repository, src: Path
) -> None:
    (src / "a.txt").write_text("one\n")
    first = snapshot(repo, src)
    lock = repo.path / "bluegrass" / "index.tmp.lock"
    killed_holding(
        ["update-index", "--add", "-z", "--index-info"],
        lock,
        repo.path,
        {"GIT_INDEX_FILE": str(repo.path / "bluegrass" / "index.tmp")},
        b"",
    )
    (src / "a.txt").write_text("two\n")

    result = snapshot(repo, src)

    assert result.committed and result.parent == first.commit
    assert git(f"--git-dir={repo.path}", "show", "main:files/a.txt") == b"two\n"
    assert not lock.exists()
    assert fsck(repo.path).returncode == 0


def test_a_commit_killed_while_git_holds_the_branch_lock_does_not_stop_the_next(
    repo: Repository, src: Path
) -> None:
    (src / "a.txt").write_text("one\n")
    first = snapshot(repo, src)
    assert first.commit is not None
    lock = repo.path / "refs" / "heads" / "main.lock"
    # A transaction prepared and never committed: update-ref holds the branch's lock.
    killed_holding(
        ["update-ref", "--stdin"],
        lock,
        repo.path,
        {},
        f"start\nupdate refs/heads/main {first.commit} {first.commit}\nprepare\n".encode(),
    )
    (src / "a.txt").write_text("two\n")

    result = snapshot(repo, src)

    assert result.committed and result.parent == first.commit
    assert git(f"--git-dir={repo.path}", "rev-parse", "main").decode().strip() == result.commit
    assert not list(repo.path.rglob("*.lock"))  # HEAD's lock, taken with the branch's
