"""What the drills on a running cloud found: leftovers of killed commits, a full disk, and
/health staying green while commits failed."""

from __future__ import annotations

import os
import time
from pathlib import Path

from bluegrass.core.store import Repository

from tests.cloud.conftest import Run, one_line_error
from tests.cloud.test_cli import make_user

HOUR = 3600


def leftovers(repo: Path) -> list[str]:
    """Temporary files git or the store write before renaming them into place."""
    objects = repo / "objects"
    found = [*objects.glob("tmp_obj_*"), *objects.glob("??/tmp_obj_*")]
    found += [*objects.glob("pack/tmp_*"), *objects.glob("pack/.tmp-*")]
    return sorted(str(p.relative_to(repo)) for p in found)


def test_maintain_removes_what_killed_commits_left_only_when_idle_and_old(
    cloud: Run, data: Path
) -> None:
    tree = make_user(cloud, data)
    (tree / "a.txt").write_text("a\n")
    cloud("commit")
    repo = data / "repos" / "alice" / "docs.git"
    head = Repository.open(repo).head()
    # What a commit or a repack killed half-way leaves: git's and the store's names.
    old = [
        repo / "objects" / "tmp_obj_Ab12Cd",
        repo / "objects" / "3f" / "tmp_obj_x9Y8z7",
        repo / "objects" / "pack" / "tmp_pack_Q1w2E3",
        repo / "objects" / "pack" / ".tmp-4242-pack-0123abcd.pack",
    ]
    for path in old:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(os.urandom(4096))
        stamp = time.time() - 2 * HOUR
        os.utime(path, (stamp, stamp))
    # Written to a minute ago: it may belong to a git that is still running.
    recent = repo / "objects" / "5e" / "tmp_obj_Rc3nT0"
    recent.parent.mkdir(exist_ok=True)
    recent.write_bytes(b"being written")
    os.utime(recent, (time.time() - 60, time.time() - 60))
    before = leftovers(repo)

    with Repository.open(repo).lock():  # a commit runs: nothing may be touched
        busy = cloud("maintain", check=False)
        assert "busy" in one_line_error(busy)
        assert leftovers(repo) == before

    done = cloud("maintain")

    assert leftovers(repo) == ["objects/5e/tmp_obj_Rc3nT0"]
    assert "4 leftover temporary files" in done.stdout, done.stdout
    assert Repository.open(repo).head() == head
    assert cloud("verify").returncode == 0
