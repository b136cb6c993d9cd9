"""Interrupted and broken syncs: kill -9 mid-upload, lost listings, missing check files,
a missing folder, the server down. Each ends in the right outcome and recovers."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess

import pytest
from bluegrass.laptop import filters

from tests.conftest import require_tool
from tests.laptop.conftest import Laptop, SftpCloud, kill_tree, one_line_error, wait_until


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def partial_uploads(folder) -> list:
    return [p for p in folder.iterdir() if filters.is_partial_name(p.name)]


def test_kill_9_mid_upload_recovers_on_the_next_run_without_resync(
    enrolled: Laptop, cloud: SftpCloud
):
    docs = enrolled.folder("docs")
    (docs / "small.txt").write_text("small\n")
    enrolled.run("segment", "add", "docs", str(docs))
    enrolled.run("sync")  # established
    big = docs / "big.bin"
    big.write_bytes(os.urandom(24 * 1024 * 1024))
    enrolled.set_sync_option("bandwidth_limit", "4M")  # a slow link: ~6 s for the big file

    proc = enrolled.popen("sync", "docs")
    remote = cloud.root / "docs"
    wait_until(lambda: partial_uploads(remote), timeout=30, what="a partial upload on the cloud")
    lock = next(enrolled.workdir("docs").glob("*.lck"))
    rclone_pid = int(json.loads(lock.read_text())["PID"])
    kill_tree(proc, rclone_pid)  # a power cut: bluegrass and rclone die at once
    assert lock.exists()  # rclone's lock is left behind
    assert not (remote / "big.bin").exists()

    enrolled.set_sync_option("bandwidth_limit", "")
    done = enrolled.run("sync", "docs")
    assert "removed the lock left by an interrupted sync" in done.stdout
    assert not any(enrolled.workdir("docs").glob("*.lck"))
    assert digest(remote / "big.bin") == digest(big)
    assert not partial_uploads(remote)
    assert not partial_uploads(docs)  # the in-flight name never came back to the laptop
    last = enrolled.segment_status("docs")["last_run"]
    assert last["outcome"] == "ok"
    assert last["resync"] is False  # recovered, not re-copied from scratch


def test_lost_listings_lock_out_and_resync_recovers(enrolled: Laptop, cloud: SftpCloud):
    docs = enrolled.folder("docs")
    (docs / "a.txt").write_text("a\n")
    enrolled.run("segment", "add", "docs", str(docs))
    enrolled.run("sync")
    for listing in enrolled.workdir("docs").glob("*.lst*"):
        listing.unlink()  # what a crash during bisync's critical section leaves, at worst

    proc = enrolled.run("sync", check=False)
    assert proc.returncode == 4
    line = one_line_error(proc)
    assert "locked out" in line and "bluegrass sync docs --resync" in line
    last = enrolled.segment_status("docs")["last_run"]
    assert last["outcome"] == "locked-out"
    assert last["command"] == "bluegrass sync docs --resync"

    (docs / "b.txt").write_text("b\n")
    enrolled.run("sync", "docs", "--resync")
    assert (cloud.root / "docs" / "b.txt").exists()
    assert enrolled.run("sync").returncode == 0


def test_exit_7_with_listings_kept_is_not_a_lockout(enrolled: Laptop, cloud: SftpCloud):
    """A check-file failure exits 7 under --resilient but keeps the listings: it needs the
    user (the check file is gone), not a lock-out."""
    docs = enrolled.folder("docs")
    (docs / "a.txt").write_text("a\n")
    enrolled.run("segment", "add", "docs", str(docs))
    enrolled.run("sync")
    enrolled.rclone("deletefile", f"bluegrass:docs/{filters.CHECK_FILENAME}")

    proc = enrolled.run("sync", check=False)
    assert proc.returncode == 3
    assert "missing on the cloud" in one_line_error(proc)
    last = enrolled.segment_status("docs")["last_run"]
    assert last["exit_code"] == 7
    assert last["outcome"] == "needs-user"
    assert last["command"] == "bluegrass sync docs --resync"
    assert any(enrolled.workdir("docs").glob("*.path1.lst"))

    enrolled.run("sync", "docs", "--resync")
    assert (cloud.root / "docs" / filters.CHECK_FILENAME).exists()
    assert enrolled.run("sync").returncode == 0


def test_a_missing_local_check_file_stops_the_sync(enrolled: Laptop, cloud: SftpCloud):
    docs = enrolled.folder("docs")
    (docs / "a.txt").write_text("a\n")
    enrolled.run("segment", "add", "docs", str(docs))
    enrolled.run("sync")
    (docs / filters.CHECK_FILENAME).unlink()
    proc = enrolled.run("sync", check=False)
    assert proc.returncode == 3
    assert f"missing in {docs.resolve()}" in one_line_error(proc)
    assert (cloud.root / "docs" / "a.txt").exists()


def test_the_first_sync_refuses_a_missing_folder(enrolled: Laptop, cloud: SftpCloud):
    gone = enrolled.home / "usb-stick" / "docs"
    enrolled.run("segment", "add", "docs", str(gone))
    proc = enrolled.run("sync", check=False)
    assert proc.returncode == 3
    line = one_line_error(proc)
    assert "does not exist" in line
    assert not gone.exists()  # never created: it may be an unplugged disk
    assert not (cloud.root / "docs").exists()
    last = enrolled.segment_status("docs")["last_run"]
    assert last["outcome"] == "needs-user"
    assert "The first sync never creates it" in last["message"]


def test_server_down_is_retry_later(enrolled: Laptop, cloud: SftpCloud):
    docs = enrolled.folder("docs")
    (docs / "a.txt").write_text("a\n")
    enrolled.run("segment", "add", "docs", str(docs))
    enrolled.run("sync")
    cloud.stop()
    proc = enrolled.run("sync", check=False)
    assert proc.returncode == 1
    assert "cannot reach the server" in one_line_error(proc)
    seg = enrolled.segment_status("docs")
    assert seg["last_run"]["outcome"] == "retry"
    assert seg["last_run"]["action"] is None
    assert seg["failures"] == 1
    assert seg["needs_attention"] is False
    cloud.start()
    enrolled.run("sync")
    assert enrolled.segment_status("docs")["failures"] == 0


def test_a_cloud_killed_mid_upload_is_retried_by_the_next_sync_without_resync(
    enrolled: Laptop, cloud: SftpCloud
):
    """bisync takes a copy failure as critical and sets its listings aside ("Must run
    --resync"): the next sync was locked out, and its --resync brought deleted files back.
    (After a first sync there are no `-old` listings for --recover to fall back on.)"""
    docs = enrolled.folder("docs")
    (docs / "small.txt").write_text("small\n")
    (docs / "deleted-later.txt").write_text("deleted with the upload\n")
    enrolled.run("segment", "add", "docs", str(docs))
    enrolled.run("sync")
    remote = cloud.root / "docs"
    (docs / "deleted-later.txt").unlink()
    big = docs / "big.bin"
    big.write_bytes(os.urandom(24 * 1024 * 1024))
    enrolled.set_sync_option("bandwidth_limit", "4M")  # a slow link: ~6 s for the big file

    proc = enrolled.popen("sync", "docs")
    wait_until(lambda: partial_uploads(remote), timeout=30, what="a partial upload on the cloud")
    assert cloud.proc is not None
    cloud.proc.kill()  # the cloud dies mid-upload; rclone retries, then gives up (~3 min)
    cloud.proc.wait()
    out, err = proc.communicate(timeout=400)
    assert proc.returncode == 1, out + err  # will retry
    assert "will retry" in err

    cloud.start()
    enrolled.set_sync_option("bandwidth_limit", "")
    done = enrolled.run("sync", "docs", check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    last = enrolled.segment_status("docs")["last_run"]
    assert last["outcome"] == "ok" and last["resync"] is False
    assert digest(remote / "big.bin") == digest(big)
    assert not (docs / "deleted-later.txt").exists()  # no resync brought it back
    assert not (remote / "deleted-later.txt").exists()
    assert not partial_uploads(remote)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="mounts need root")
def test_a_full_cloud_disk_says_so_retries_and_recovers_once_space_is_freed(
    enrolled: Laptop, cloud: SftpCloud
):
    """The cloud's data folder on a 4 MiB file system: a 6 MiB upload fills it. The sync
    ended "locked out" with "closed pipe", no word of space."""
    mount = require_tool("mount")
    subprocess.run([mount, "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(cloud.root)], check=True)
    try:
        docs = enrolled.folder("docs")
        (docs / "small.txt").write_text("small\n")
        enrolled.run("segment", "add", "docs", str(docs))
        enrolled.run("sync")
        big = docs / "big.bin"
        big.write_bytes(os.urandom(6 * 1024 * 1024))

        proc = enrolled.run("sync", check=False)
        assert proc.returncode == 1, proc.stdout + proc.stderr  # will retry, not locked out
        [line] = [ln for ln in proc.stderr.splitlines() if ln.startswith("bluegrass: error:")]
        assert "no space left on the cloud" in line
        last = enrolled.segment_status("docs")["last_run"]
        assert last["outcome"] == "retry"
        assert "Free some space on the cloud" in last["action"]

        # The administrator makes room: the next sync carries on, without a resync.
        remount = [mount, "-o", "remount,size=64m", str(cloud.root)]
        subprocess.run(remount, check=True)
        enrolled.run("sync")
        last = enrolled.segment_status("docs")["last_run"]
        assert last["outcome"] == "ok" and last["resync"] is False
        assert digest(cloud.root / "docs" / "big.bin") == digest(big)
    finally:
        cloud.stop()
        subprocess.run([require_tool("umount"), "--lazy", str(cloud.root)], check=False)
