"""What the drills on a running cloud found: leftovers of killed commits, a full disk, and
/health staying green while commits failed."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from bluegrass.cloud.accounts import Accounts
from bluegrass.cloud.datadir import DataRoot
from bluegrass.cloud.jobhistory import Job
from bluegrass.cloud.panelbackend import CloudBackend
from bluegrass.core.store import Repository

from tests.appliance.conftest import Loop
from tests.appliance.conftest import make_loop as make_loop  # a fixture, used by name
from tests.cloud.conftest import Run, one_line_error
from tests.cloud.server import Server
from tests.cloud.test_cli import make_user
from tests.conftest import VENV_BIN
from tests.support.net import free_port

HOUR = 3600


def runner(data: Path) -> Run:
    """The real `bluegrass-cloud` command line on a data root of the test's choosing."""

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(VENV_BIN / "bluegrass-cloud"), "--data", str(data), *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"bluegrass-cloud {' '.join(args)} failed: {proc.stderr}")
        return proc

    return run


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


def health(server: Server) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/health") as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as refused:
        return refused.code, json.load(refused)


def web_admin(data: Path, user: str) -> None:
    subprocess.run(
        [
            str(VENV_BIN / "bluegrass-cloud"),
            "--data",
            str(data),
            "user",
            "password",
            user,
            "--password-stdin",
            "--admin",
        ],
        input="a long enough password 1\n",
        text=True,
        check=True,
        capture_output=True,
    )


def test_health_and_dashboard_name_a_segment_whose_commits_fail(
    cloud: Run, data: Path, tmp_path: Path
) -> None:
    make_user(cloud, data)
    for segment in ("docs", "photos"):
        tree = data / "files" / "alice" / segment
        tree.mkdir(exist_ok=True)
        (tree / "a.txt").write_text(segment)
    web_admin(data, "alice")
    # Something in the way of docs' history: every commit of docs fails, photos' works.
    blocker = data / "repos" / "alice" / "docs.git"
    blocker.mkdir(parents=True)
    (blocker / "not-git").write_text("x")
    server = Server(data, tmp_path, free_port(), free_port())
    server.start()
    try:
        server.wait_log("commit alice/photos: committed")
        server.wait_log("commit alice/docs: ")
        code, body = health(server)
        assert code == 503, body
        assert body["ok"] is False and body["sync_endpoint"] == "up"
        assert body["commits"] == "failing" and body["commits_failing"] == 1
        assert "alice" not in json.dumps(body)  # /health answers anyone: no names in it
        backend = CloudBackend(DataRoot(data))
        alice = backend.account("alice")
        assert alice is not None
        attention = [p.text for p in backend.dashboard(alice).problems]
        assert any("alice/docs" in t and "not a git repository" in t for t in attention), attention
        assert not any("alice/photos" in t for t in attention), attention

        # Fixed by hand and committed by hand: green again.
        shutil.rmtree(blocker)
        cloud("commit", "--user", "alice", "--segment", "docs")
        code, body = health(server)
        assert (code, body["commits"]) == (200, "ok"), body
        assert not any("alice/docs" in p.text for p in backend.dashboard(alice).problems)
    finally:
        assert server.stop() == 0


def test_health_says_when_a_daily_commit_is_overdue(cloud: Run, data: Path, tmp_path: Path) -> None:
    tree = make_user(cloud, data)
    (tree / "a.txt").write_text("a\n")
    web_admin(data, "alice")
    cloud("commit")
    # Due four hours ago; no waiting for uploads, so an hour late is overdue.
    due = (datetime.now() - timedelta(hours=4)).strftime("%H:%M")
    (data / "bluegrass-cloud.toml").write_text(
        f'[schedule]\ncommit_at = "{due}"\nupload_wait_minutes = 0\n'
    )
    yesterday = (datetime.now() - timedelta(days=1, hours=4)).strftime("%Y-%m-%dT%H:%M")
    with Accounts.open(data) as accounts:  # yesterday's daily commit ran
        accounts.record_job(Job("commit", "alice", "docs", yesterday, "s", "f", "ok", "done"))
    repo = Repository.open(data / "repos" / "alice" / "docs.git")
    server = Server(data, tmp_path, free_port(), free_port())
    with repo.lock():  # a commit that never ends holds the segment
        server.start()
        try:
            server.wait_log("commit alice/docs: busy")
            code, body = health(server)
            assert code == 503 and body["commits"] == "failing", body
            backend = CloudBackend(DataRoot(data))
            alice = backend.account("alice")
            assert alice is not None
            attention = [p.text for p in backend.dashboard(alice).problems]
            assert any("alice/docs" in t and "has not" in t for t in attention), attention
        except BaseException:
            server.stop()
            raise
    try:
        # The busy retry doubles its delay while the lock is held (2, 4, 8 s ...): on a loaded
        # machine the next try can come up to twice the time held after the release.
        server.wait_log("commit alice/docs: no change", timeout=90)
        code, body = health(server)
        assert (code, body["commits"]) == (200, "ok"), body
    finally:
        assert server.stop() == 0


# -- a full disk -------------------------------------------------------------------------------


@pytest.fixture
def full_disk_data(make_loop: Callable[[int], Loop], tmp_path: Path) -> Iterator[Path]:
    """A data root alone on a small ext4 (no reserved blocks: root fills it to 0 too)."""
    loop = make_loop(32)
    subprocess.run(["mkfs.ext4", "-q", "-m", "0", str(loop.image)], check=True)
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    device = loop.attach()
    subprocess.run(["mount", device, str(mountpoint)], check=True)
    try:
        yield mountpoint / "data"
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)
        loop.detach()


def fill(path: Path) -> Path:
    """Write to `path` until the file system refuses; 0 bytes are left."""
    filler = path / "filler"
    with filler.open("wb") as out:
        chunk = b"\0" * (1 << 16)
        try:
            while True:
                out.write(chunk)
                out.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    with contextlib.suppress(OSError), filler.open("ab") as out:
        while True:  # the last blocks, byte by byte until none is left
            out.write(b"\0" * 512)
            out.flush()
    return filler


def temporaries(repo: Path) -> list[str]:
    found = leftovers(repo)
    found += [str(p.relative_to(repo)) for p in (repo / "bluegrass").glob("*.tmp*")]
    return found


def test_commit_on_a_full_disk_says_where_leaves_nothing_and_recovers(
    full_disk_data: Path, tmp_path: Path
) -> None:
    data = full_disk_data
    cloud = runner(data)
    tree = make_user(cloud, data)
    (tree / "a.txt").write_text("a\n")
    cloud("commit")
    repo = data / "repos" / "alice" / "docs.git"
    head = Repository.open(repo).head()
    for i in range(50):
        (tree / f"new-{i}.bin").write_bytes(os.urandom(20_000))
    filler = fill(data)
    assert shutil.disk_usage(data).free == 0

    failed = cloud("commit", check=False)

    line = one_line_error(failed)
    assert "no space left" in line and str(data.parent) in line, line
    assert Repository.open(repo).head() == head
    assert temporaries(repo) == []

    filler.unlink()
    cloud("commit")
    assert Repository.open(repo).head() != head
    assert temporaries(repo) == []
    assert cloud("verify").returncode == 0


def test_run_on_a_full_disk_says_where(full_disk_data: Path) -> None:
    data = full_disk_data
    cloud = runner(data)
    make_user(cloud, data)
    fill(data)

    failed = cloud(
        "run",
        "--sftp-port",
        str(free_port()),
        "--http-port",
        str(free_port()),
        "--device-port",
        str(free_port()),
        check=False,
    )

    line = one_line_error(failed)
    assert "no space left" in line and str(data.parent) in line, line
