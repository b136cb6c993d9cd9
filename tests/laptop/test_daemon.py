"""`bluegrass run`: syncs on its schedule, backs off on failure, stops cleanly on signals."""

from __future__ import annotations

import os
import random
import signal
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from bluegrass.laptop import filters, schedule

from tests.laptop.conftest import Laptop, SftpCloud, one_line_error, wait_until


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def seg_status(laptop: Laptop, name: str = "docs") -> dict:
    return laptop.segment_status(name)


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 30) -> str:
    proc.send_signal(sig)  # to bluegrass only, as systemd's KillMode=mixed does
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return out


@pytest.fixture
def daemon_laptop(enrolled: Laptop) -> Laptop:
    docs = enrolled.folder("docs")
    (docs / "a.txt").write_text("a\n")
    enrolled.run("segment", "add", "docs", str(docs))
    return enrolled


def test_run_syncs_schedules_with_jitter_and_stops_on_sigterm(
    daemon_laptop: Laptop, cloud: SftpCloud
):
    proc = daemon_laptop.popen("run")
    try:
        seg = wait_until(
            lambda: (s := seg_status(daemon_laptop))["last_run"] and s["next_run"] and s,
            what="the daemon's first sync",
        )
        assert seg["last_run"]["outcome"] == "ok"
        assert (cloud.root / "docs" / "a.txt").exists()
        delay = when(seg["next_run"]) - when(seg["last_run"]["finished"])
        assert timedelta(minutes=13.5) - timedelta(seconds=2) <= delay
        assert delay <= timedelta(minutes=16.5) + timedelta(seconds=2)
        status = daemon_laptop.status()
        assert status["daemon"]["running"] is True
        assert status["daemon"]["pid"] == proc.pid

        # A segment added while it runs is picked up without a restart.
        photos = daemon_laptop.folder("photos")
        (photos / "p.jpg").write_bytes(b"\xff\xd8")
        daemon_laptop.run("segment", "add", "photos", str(photos))
        wait_until(lambda: seg_status(daemon_laptop, "photos")["last_run"], what="photos")
        assert (cloud.root / "photos" / "p.jpg").exists()
    finally:
        if proc.poll() is None:
            out = stop(proc)
    assert "stopped" in out
    status = daemon_laptop.status()
    assert status["daemon"] == {"running": False, "pid": None}
    assert all(s["next_run"] is None for s in status["segments"])
    assert not (daemon_laptop.state_dir / "daemon.json").exists()


def test_sigterm_during_a_transfer_lets_rclone_finish(daemon_laptop: Laptop, cloud: SftpCloud):
    daemon_laptop.run("sync")  # established: the daemon's run will be an ordinary one
    cloud.stop()  # and a failed last run makes the daemon sync at once when it starts
    assert daemon_laptop.run("sync", check=False).returncode == 1
    cloud.start()
    docs = daemon_laptop.home / "docs"
    big = docs / "big.bin"
    big.write_bytes(os.urandom(12 * 1024 * 1024))
    daemon_laptop.set_sync_option("bandwidth_limit", "4M")
    proc = daemon_laptop.popen("run")
    remote = cloud.root / "docs"
    wait_until(
        lambda: [p for p in remote.iterdir() if filters.is_partial_name(p.name)],
        what="the upload to start",
    )
    stop(proc, timeout=100)
    log = (daemon_laptop.state_dir / "segments" / "docs" / "last.log").read_text()
    assert "Signal received: terminated" in log  # passed on to rclone, once
    assert "Graceful shutdown completed successfully" in log
    assert not any(daemon_laptop.workdir("docs").glob("*.lck"))  # rclone saved its state
    assert (remote / "big.bin").read_bytes() == big.read_bytes()  # finished, not cut off

    daemon_laptop.set_sync_option("bandwidth_limit", "")
    daemon_laptop.run("sync")
    last = seg_status(daemon_laptop)["last_run"]
    assert last["outcome"] == "ok" and last["resync"] is False


def test_a_second_daemon_is_refused_and_sigint_stops_the_first(daemon_laptop: Laptop):
    proc = daemon_laptop.popen("run")
    try:
        wait_until(lambda: daemon_laptop.status()["daemon"]["running"], what="the daemon")
        second = daemon_laptop.run("run", check=False)
        assert second.returncode == 2
        assert "already running" in one_line_error(second)
    finally:
        stop(proc, signal.SIGINT)


def test_failures_back_off(daemon_laptop: Laptop, cloud: SftpCloud):
    cloud.stop()
    proc = daemon_laptop.popen("run")
    try:
        seg = wait_until(
            lambda: (s := seg_status(daemon_laptop))["last_run"] and s["next_run"] and s,
            what="a failed sync",
        )
    finally:
        stop(proc)
    assert seg["last_run"]["outcome"] == "retry"
    delay = when(seg["next_run"]) - when(seg["last_run"]["finished"])
    assert timedelta(seconds=50) <= delay <= timedelta(seconds=70)  # 1 minute, +-10%


def test_schedule_delays():
    rng = random.Random(7)
    for _ in range(200):
        ok = schedule.delay_seconds(
            ok=True, failures=0, interval_minutes=15, backoff_max_minutes=60, rng=rng
        )
        assert 15 * 60 * 0.9 <= ok <= 15 * 60 * 1.1
    backoff = [
        schedule.delay_seconds(
            ok=False, failures=n, interval_minutes=15, backoff_max_minutes=60, rng=rng
        )
        / 60
        for n in range(1, 10)
    ]
    for got, base in zip(backoff, [1, 2, 4, 8, 16, 32, 60, 60, 60], strict=True):
        assert base * 0.9 <= got <= base * 1.1
    # Different draws: laptops do not arrive in step.
    draws = {
        schedule.delay_seconds(
            ok=True, failures=0, interval_minutes=15, backoff_max_minutes=60, rng=rng
        )
        for _ in range(5)
    }
    assert len(draws) == 5


def test_first_due_after_a_restart():
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert schedule.first_due(None, 15, now) == now
    assert schedule.first_due(now - timedelta(minutes=5), 15, now) == now + timedelta(minutes=10)
    assert schedule.first_due(now - timedelta(hours=5), 15, now) == now
    # A clock that jumped back cannot push the first sync beyond one interval.
    assert schedule.first_due(now + timedelta(days=1), 15, now) == now + timedelta(minutes=15)
