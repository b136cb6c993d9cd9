"""Skipping bisync when neither side changed (docs/decisions.md 56), through the real cloud.

The module's own cloud and two laptops (conftest.py). Each test first lets the last changes age
past the racy window (a state taken within treestate.RACY_SECONDS of a change is never kept),
then shows a quiet sync being remembered and the next one skipping bisync, then makes one kind
of change and shows that the sync after it runs bisync and carries the change.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from bluegrass.core import treestate

from tests.e2e.conftest import Cloud, Laptops
from tests.e2e.test_laptops_and_cloud import sync
from tests.laptop.conftest import Laptop, kill_tree, wait_until


def newest_change(folder: Path) -> float:
    return max(p.lstat().st_ctime for p in [folder, *folder.rglob("*")])


def aged_past_racy_window(*folders: Path) -> None:
    """Wait until no entry of `folders` changed within the racy window: the condition itself,
    read from the files' own change times, not a fixed pause."""
    newest = max(newest_change(f) for f in folders)
    wait_until(
        lambda: time.time() > newest + treestate.RACY_SECONDS + 0.05,
        timeout=10,
        what="the last change to leave the racy window",
    )


def quiet(laptop: Laptop, folder: Path, cloud: Cloud) -> None:
    """Sync until a run skips bisync: at most one full run (kept as quiet) before it."""
    aged_past_racy_window(folder, cloud.tree)
    first = sync(laptop)
    assert first["files_transferred"] == 0 and first["deletes"] == 0, first
    if not first["bisync"]:
        return
    second = sync(laptop)
    assert second["bisync"] is False, f"a quiet sync was not remembered: {first} {second}"
    assert "nothing changed on either side" in second["message"]


@pytest.fixture(scope="module")
def joined(cloud: Cloud, laptops: Laptops) -> Iterator[Laptops]:
    (laptops.docs_a / "letters").mkdir()
    (laptops.docs_a / "letters" / "one.txt").write_text("dear one\n")
    (laptops.docs_a / "plan.txt").write_text("plan A\n")
    sync(laptops.a)
    sync(laptops.b)
    assert (laptops.docs_b / "plan.txt").read_text() == "plan A\n"
    yield laptops


def test_a_quiet_sync_is_remembered_and_the_next_one_skips_bisync(cloud: Cloud, joined: Laptops):
    aged_past_racy_window(joined.docs_a, cloud.tree)
    confirming = sync(joined.a)
    assert confirming["bisync"] is True and confirming["files_transferred"] == 0
    skipped = sync(joined.a)
    assert skipped["bisync"] is False, skipped
    assert skipped["files_transferred"] == 0 and skipped["exit_code"] is None
    status = joined.a.segment_status("docs")
    assert status["last_run"]["outcome"] == "ok" and status["last_run"]["bisync"] is False
    assert sync(joined.a)["bisync"] is False  # and stays skipped while nothing changes


def test_an_edit_on_the_other_laptop_is_not_skipped(cloud: Cloud, joined: Laptops):
    quiet(joined.a, joined.docs_a, cloud)
    (joined.docs_b / "plan.txt").write_text("plan B\n")  # same size as "plan A"
    assert sync(joined.b)["files_transferred"] == 1
    pulled = sync(joined.a)
    assert pulled["bisync"] is True and pulled["files_transferred"] == 1, pulled
    assert (joined.docs_a / "plan.txt").read_text() == "plan B\n"


def test_a_local_edit_that_keeps_size_and_time_is_not_skipped(cloud: Cloud, joined: Laptops):
    """bisync itself cannot see such an edit (it compares size and time); the state can
    (the change time moves), so at least the question is put to bisync."""
    quiet(joined.a, joined.docs_a, cloud)
    path = joined.docs_a / "letters" / "one.txt"
    before = path.stat()
    path.write_text("dear two\n")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    try:
        assert sync(joined.a)["bisync"] is True
    finally:  # the old bytes back, as bisync (size and time equal) still takes them to be
        path.write_text("dear one\n")
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_a_file_written_on_the_cloud_side_is_not_skipped(cloud: Cloud, joined: Laptops):
    """As a restore from the web page writes into the live folder."""
    quiet(joined.a, joined.docs_a, cloud)
    (cloud.tree / "letters" / "restored.txt").write_text("from the cloud\n")
    pulled = sync(joined.a)
    assert pulled["bisync"] is True and pulled["files_transferred"] == 1, pulled
    assert (joined.docs_a / "letters" / "restored.txt").read_text() == "from the cloud\n"


def test_a_local_delete_is_not_skipped(cloud: Cloud, joined: Laptops):
    quiet(joined.a, joined.docs_a, cloud)
    (joined.docs_a / "letters" / "restored.txt").unlink()
    pushed = sync(joined.a)
    assert pushed["bisync"] is True and pushed["deletes"] == 1, pushed
    assert not (cloud.tree / "letters" / "restored.txt").exists()


def test_a_sync_killed_mid_way_leaves_no_state_to_skip_on(cloud: Cloud, joined: Laptops):
    """The kept pair leaves state.json before bisync starts: after a power cut mid-sync the
    next run cannot skip, whatever the folders look like then."""
    a = joined.a
    quiet(a, joined.docs_a, cloud)
    state_file = a.workdir("docs").parent / "state.json"
    assert json.loads(state_file.read_text())["settled"] is not None
    data = os.urandom(3 << 20)
    (joined.docs_a / "big.bin").write_bytes(data)
    a.set_sync_option("bandwidth_limit", "512K")  # about 6 s: time to look, then pull the plug
    proc = a.popen("sync", "docs")

    def bisyncing() -> list[psutil.Process]:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the sync ended before bisync was seen: {out}{err}")
        found = []
        for child in psutil.Process(proc.pid).children(recursive=True):
            # The sync's short rclone runs (the sidecar's upload and fetch) may have exited,
            # not yet reaped, as we look.
            with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
                if child.name() == "rclone" and "bisync" in child.cmdline():
                    found.append(child)
        return found

    rclone_pid = None
    try:
        [rclone] = wait_until(bisyncing, timeout=30, what="bisync to start")
        rclone_pid = rclone.pid
        assert json.loads(state_file.read_text())["settled"] is None
    finally:
        a.set_sync_option("bandwidth_limit", "")
        kill_tree(proc, rclone_pid)
    result = sync(a)
    assert result["bisync"] is True, result
    assert (cloud.tree / "big.bin").read_bytes() == data


def test_without_the_cloud_answering_every_sync_runs_bisync(cloud: Cloud, joined: Laptops):
    """A laptop enrolled before the cloud's state existed has no device-password file: the
    question cannot be asked, so nothing is skipped."""
    quiet(joined.a, joined.docs_a, cloud)
    password = joined.a.config_dir / "device-password"
    kept = password.read_bytes()
    password.unlink()
    try:
        assert sync(joined.a)["bisync"] is True
        assert sync(joined.a)["bisync"] is True
    finally:
        password.write_bytes(kept)
    assert sync(joined.a)["bisync"] is True  # nothing was kept meanwhile: full, then skips
    assert sync(joined.a)["bisync"] is False


def test_the_laptops_and_the_cloud_agree_at_the_end(cloud: Cloud, joined: Laptops):
    sync(joined.b)

    def files(root: Path) -> dict[str, bytes]:
        return {
            p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*"))
            if p.is_file() and p.relative_to(root).parts[0] != ".bluegrass-meta"
        }

    assert files(joined.docs_a) == files(joined.docs_b) == files(cloud.tree)
