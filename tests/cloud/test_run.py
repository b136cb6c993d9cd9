"""`bluegrass-cloud run` as a supervisor: start, stop, restart, schedule, and bad setups."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

import psutil
import pytest
from bluegrass.cloud import scheduler as scheduler_module
from bluegrass.cloud import settings
from bluegrass.cloud.accounts import Accounts
from bluegrass.cloud.datadir import DataRoot
from bluegrass.cloud.scheduler import Scheduler, last_occurrence
from bluegrass.core.store import Repository, browse

from tests.cloud.conftest import Run, Site, one_line_error
from tests.cloud.server import Server, wait_for
from tests.support.net import free_port


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_sigterm_stops_everything_and_exits_0(site: Site) -> None:
    server = site.server
    assert server.proc is not None
    children = psutil.Process(server.proc.pid).children(recursive=True)
    assert server.endpoint_pid() in [c.pid for c in children]
    health = json.load(urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/health"))
    assert health == {
        "ok": True,
        "http": "up",
        "sync_endpoint": "up",
        "commits": "ok",
        "commits_failing": 0,
    }
    assert server.stop() == 0
    for child in children:
        assert gone(child.pid), child
    assert "stopped" in server.log().splitlines()[-1]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.sftp_port), timeout=1).close()


def test_sigint_is_a_clean_stop_too(site: Site) -> None:
    assert site.server.proc is not None
    site.server.proc.send_signal(signal.SIGINT)
    assert site.server.proc.wait(30) == 0
    assert gone(site.server.endpoint_pid())


def test_a_killed_endpoint_is_restarted(site: Site) -> None:
    first = site.server.endpoint_pid()
    os.kill(first, signal.SIGKILL)
    site.server.wait_log("sync endpoint exited")
    site.server.wait_log("sync endpoint ready", count=2)
    assert site.server.endpoint_pid() != first
    again = site.client.rclone("alice", "lsf", "-R", ":sftp:", password=site.alice.password)
    assert again.returncode == 0, again.stderr
    assert "docs/alice.txt" in again.stdout.split()


def test_endpoint_dies_with_a_killed_supervisor(site: Site) -> None:
    # SIGKILL leaves run no chance to stop its child; the kernel must (parent-death signal).
    assert site.server.proc is not None
    child = site.server.endpoint_pid()
    site.server.proc.kill()
    site.server.proc.wait(10)
    wait_for(lambda: gone(child), 10, "the orphaned endpoint to stop")


def test_scheduler_catches_up_retries_a_busy_segment_and_maintains(
    cloud: Run, data: Path, tmp_path: Path
) -> None:
    cloud("init")
    cloud("user", "add", "alice")
    for segment in ("docs", "photos"):
        (data / "files" / "alice" / segment).mkdir()
        (data / "files" / "alice" / segment / "a.txt").write_text(segment)
    busy = Repository.init(data / "repos" / "alice" / "docs.git")
    server = Server(data, tmp_path, free_port(), free_port())
    with busy.lock():
        server.start()
        # Never committed, so its last 03:00 is overdue: both run at once; docs is busy.
        server.wait_log("commit alice/photos: committed")
        server.wait_log("commit alice/docs: busy; retrying in 2s")
        # An on-demand commit meanwhile fails cleanly for the busy segment only.
        proc = cloud("commit", "--user", "alice", "--segment", "docs", check=False)
        assert proc.returncode == 1 and "busy" in one_line_error(proc)
    server.wait_log("commit alice/docs: committed")
    server.wait_log("maintain alice/docs: maintained")
    assert server.stop() == 0
    with Accounts.open(data) as accounts:
        outcomes = [j.outcome for j in accounts.jobs("commit", "alice", "docs")]
        assert outcomes[0] == "busy" and outcomes[-1] == "ok"
        assert [j.outcome for j in accounts.jobs("maintain", "alice", "photos")] == ["ok"]
    assert not list((data / "repos" / "alice" / "photos.git" / "objects").glob("??/*"))
    # A restart the same day does not commit again.
    server.start()
    server.wait_log("sync endpoint ready")
    assert server.stop() == 0
    assert "commit alice" not in server.log()


def test_each_segment_at_its_own_time(cloud: Run, data: Path) -> None:
    cloud("init")
    cloud("user", "add", "alice")
    for segment in ("docs", "photos"):
        (data / "files" / "alice" / segment).mkdir()
    (data / "bluegrass-cloud.toml").write_text(
        '[schedule]\ncommit_at = "03:00"\n\n[segments."alice/photos"]\ncommit_at = "12:30"\n'
    )
    root = DataRoot(data)
    scheduler = Scheduler(root, stop=None, log=print)  # type: ignore[arg-type]
    cfg = settings.load(data)
    with Accounts.open(data) as accounts:
        due = scheduler.due(accounts, cfg, datetime(2026, 3, 10, 11, 0))
        assert due == [
            ("alice", "docs", "2026-03-10T03:00"),
            ("alice", "photos", "2026-03-09T12:30"),
        ]
    assert last_occurrence(datetime(2026, 3, 10, 12, 30), "12:30") == datetime(2026, 3, 10, 12, 30)
    assert last_occurrence(datetime(2026, 3, 1, 0, 5), "23:59") == datetime(2026, 2, 28, 23, 59)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--sftp-port", "0"], "port 0 is out of range"),
        (["--http-port", "70000"], "port 70000 is out of range"),
        (["--sftp-port", "twenty"], "not a port number"),
        (["--bind", "not a host!"], "not an IP address or host name"),
        (["--sftp-port", "4000", "--http-port", "4000"], "cannot share port 4000"),
        (["--http-port", "4001", "--device-port", "4001"], "device port 4001 must differ"),
    ],
)
def test_bad_options(cloud: Run, args: list[str], expected: str) -> None:
    cloud("init")
    assert expected in one_line_error(cloud("run", *args, check=False))


def test_bad_server_config(cloud: Run, data: Path) -> None:
    cloud("init")
    config = data / "bluegrass-cloud.toml"
    config.write_text("[server]\nsftp_port = 99999\n")
    line = one_line_error(cloud("run", check=False))
    assert str(config) in line and "server.sftp_port: expected a TCP port number" in line
    config.write_text("[schedule]\nupload_wait_minutes = -5\n")
    line = one_line_error(cloud("run", check=False))
    assert str(config) in line and "schedule.upload_wait_minutes: expected a whole number" in line


def test_port_in_use_fails_at_once(cloud: Run, data: Path) -> None:
    cloud("init")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = ["--http-port", str(free_port()), "--device-port", str(free_port())]
        proc = cloud("run", "--sftp-port", str(port), *ports, check=False)
    # run logs as it starts; the failure is its last line, in the usual form.
    assert proc.returncode == 1
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("bluegrass-cloud: error: the sync endpoint did not start: ")
    assert "address already in use" in line


def test_health_reports_a_dead_endpoint(site: Site) -> None:
    # "exited" is logged after the state is set and 1 s before the restart.
    url = f"http://127.0.0.1:{site.server.http_port}/health"
    os.kill(site.server.endpoint_pid(), signal.SIGKILL)
    site.server.wait_log("sync endpoint exited")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url)
    assert refused.value.code == 503
    assert json.load(refused.value) == {
        "ok": False,
        "http": "up",
        "sync_endpoint": "down",
        "commits": "ok",
        "commits_failing": 0,
    }
    site.server.wait_log("sync endpoint ready", count=2)
    assert json.load(urllib.request.urlopen(url))["sync_endpoint"] == "up"


def test_user_remove_drops_credentials(site: Site) -> None:
    site.server.wait_log("maintain bob/docs: maintained")  # the catch-up commit is done
    site.cloud("user", "remove", "bob", "--delete-data")
    with sqlite3.connect(site.data / "bluegrass.db") as db:
        assert db.execute("SELECT count(*) FROM devices WHERE user = 'bob'").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM users WHERE name = 'bob'").fetchone() == (0,)
    site.server.wait_log("sync endpoint ready", count=2)
    proc = site.client.rclone("bob", "lsf", ":sftp:", password=site.bob.password)
    assert proc.returncode != 0


def test_user_remove_waits_for_no_commit(cloud: Run, data: Path) -> None:
    cloud("init")
    cloud("user", "add", "alice")
    (data / "files" / "alice" / "docs").mkdir()
    (data / "files" / "alice" / "docs" / "a.txt").write_text("a")
    cloud("commit")
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    # A commit of one of alice's segments is running (it holds the user's shared lock).
    with DataRoot(data).user_lock("alice", exclusive=False):
        proc = cloud("user", "remove", "alice", "--delete-data", check=False)
        assert "a commit of their segments is running" in one_line_error(proc)
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before
    assert json.loads(cloud("device", "list", "alice", "--json").stdout)["devices"]
    cloud("user", "remove", "alice", "--delete-data")
    assert not (data / "files" / "alice").exists() and not (data / "repos" / "alice").exists()


PARTIAL = "big.bin.0123abcd.bluegrass-part"  # the laptop's partial-upload name (core.syncspec)


def scheduler_for(data: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Scheduler, list[str]]:
    """The scheduler of `run`, driven here round by round (its thread is not started). The
    minute of quiet it waits for after an upload is shortened to a second."""
    monkeypatch.setattr(scheduler_module, "UPLOAD_QUIET", 1.0)
    monkeypatch.setattr(scheduler_module, "UPLOAD_POLL", 0.1)
    logs: list[str] = []
    return Scheduler(DataRoot(data), stop=threading.Event(), log=logs.append), logs


def segment_being_uploaded(cloud: Run, data: Path) -> Path:
    """alice's segment docs, never committed, with a.txt and big.bin half uploaded."""
    cloud("init")
    cloud("user", "add", "alice")
    tree = data / "files" / "alice" / "docs"
    tree.mkdir()
    (tree / "a.txt").write_text("a\n")
    (tree / PARTIAL).write_bytes(b"half")
    return tree


def rounds_until(scheduler: Scheduler, logs: list[str], needle: str, timeout: float = 20) -> str:
    """Run scheduler rounds, each when the scheduler says its next one is due, until a log
    line contains `needle`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        scheduler.tick()
        found = [line for line in logs if needle in line]
        if found:
            return found[0]
        scheduler.stop.wait(scheduler._next_wait())
    raise AssertionError(f"no {needle!r} in {logs}")


def test_the_daily_commit_waits_for_an_upload_to_end(
    cloud: Run, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A laptop's first upload in progress at commit time: the day's snapshot waits for it,
    and has the whole file, not a tree half uploaded."""
    tree = segment_being_uploaded(cloud, data)
    scheduler, logs = scheduler_for(data, monkeypatch)

    assert "waiting for the upload of big.bin.0123abcd.bluegrass-part" in rounds_until(
        scheduler, logs, "waiting"
    )
    for _ in range(3):  # more rounds while it is still uploading: still no commit
        scheduler.stop.wait(scheduler._next_wait())
        scheduler.tick()
    assert not any("committed" in line for line in logs), logs
    with Accounts.open(data) as accounts:
        assert accounts.jobs("commit", "alice", "docs") == []

    (tree / PARTIAL).write_bytes(b"half and the rest")
    (tree / PARTIAL).rename(tree / "big.bin")  # as rclone ends an upload
    done = time.monotonic()
    rounds_until(scheduler, logs, "committed")
    assert time.monotonic() - done >= scheduler_module.UPLOAD_QUIET
    assert any("no upload for 1 s; committing" in line for line in logs), logs
    repo = Repository.open(data / "repos" / "alice" / "docs.git")
    head = repo.head()
    assert head is not None
    assert sorted(repo.manifest(head)) == [b".", b"a.txt", b"big.bin"]  # "." the root folder
    stored = browse.git_path(b"big.bin").decode()
    assert repo.read_blob(f"{head}:{stored}") == b"half and the rest"


def test_the_wait_for_an_upload_has_an_end(
    cloud: Run, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upload that never ends (a laptop gone mid-file) delays the day's commit by
    `upload_wait_minutes` at most; the commit then leaves the partial file out and says so.
    The scheduler's clock is moved on by two hours: that wait cannot happen in a test."""
    segment_being_uploaded(cloud, data)
    scheduler, logs = scheduler_for(data, monkeypatch)
    rounds_until(scheduler, logs, "waiting")

    class TwoHoursLater:
        @staticmethod
        def monotonic() -> float:
            return time.monotonic() + 2 * 3600

    monkeypatch.setattr(scheduler_module, "time", TwoHoursLater)
    line = rounds_until(scheduler, logs, "commit alice/docs: committed")
    assert "1 skipped" in line
    assert any("still being uploaded into after 120 min" in x for x in logs), logs


def test_with_no_upload_wait_the_commit_leaves_the_partial_out_at_once(
    cloud: Run, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    segment_being_uploaded(cloud, data)
    (data / "bluegrass-cloud.toml").write_text("[schedule]\nupload_wait_minutes = 0\n")
    scheduler, logs = scheduler_for(data, monkeypatch)
    scheduler.tick()
    assert not any("waiting" in line for line in logs), logs
    assert any("commit alice/docs:" in line and "1 skipped" in line for line in logs), logs


def test_a_partial_upload_nobody_writes_any_more_does_not_hold_the_commit(
    cloud: Run, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a killed upload leaves (a laptop switched off mid-file) is never finished: rclone
    gives up a transfer that moves nothing for 5 minutes. Such a partial file does not put the
    daily commit off; it is left out and reported, as always."""
    tree = segment_being_uploaded(cloud, data)
    an_hour_ago = time.time() - 3600
    os.utime(tree / PARTIAL, (an_hour_ago, an_hour_ago))
    scheduler, logs = scheduler_for(data, monkeypatch)
    scheduler.tick()
    assert not any("waiting" in line for line in logs), logs
    assert any("commit alice/docs: committed" in line and "1 skipped" in line for line in logs)
