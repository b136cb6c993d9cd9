"""`bluegrass-appliance run`: back-off while the cloud is down, a drive pulled mid-mirror."""

from __future__ import annotations

import itertools
import signal
import subprocess
import time
from pathlib import Path

import pytest
from bluegrass.appliance import drive

from tests.appliance.conftest import (
    USER,
    Appliance,
    CloudData,
    enrollment,
    free_port,
    fsck,
    git,
    shutdown_fs,
    write_random,
)
from tests.appliance.fakecloud import FakeCloud


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=60)


@pytest.mark.slow
def test_cloud_down_backs_off_says_since_when_and_recovers(
    appliance: Appliance, cloud_data: CloudData, tmp_path: Path
) -> None:
    (cloud_data.files("docs") / "a.txt").write_text("hello\n")
    head = cloud_data.commit("docs")
    port = free_port()  # nothing listens there yet: the cloud is down
    code = enrollment(port)
    appliance.enroll(code)
    appliance.configure(
        '[schedule]\nretry_min = "1s"\nretry_max = "4s"\n[files]\nenabled = false\n'
    )
    drive_dir = tmp_path / "drive"
    appliance.global_args = ["--drive-dir", str(drive_dir)]
    log = tmp_path / "daemon.log"

    with appliance.daemon(log) as proc:
        down = appliance.wait_status(
            lambda s: s["cloud"]["state"] == "unreachable" and s["cloud"]["attempts"] >= 3,
            "three failed attempts to reach the cloud",
            log=log,
        )
        assert "cannot reach the cloud" in down["cloud"]["message"]
        assert down["cloud"]["next_try"] is not None
        assert "UNREACHABLE since " + down["cloud"]["since"] in appliance("status").stdout
        tries = [
            j["started_ts"]
            for j in reversed(_jobs(appliance))
            if j["outcome"] == "cloud-unreachable"
        ]
        gaps = [b - a for a, b in itertools.pairwise(tries)]
        # 1 s, then 2 s, then 4 s (the cap): each wait at least the back-off, and growing.
        assert gaps[0] >= 1 and gaps[1] >= 2, gaps
        assert gaps[1] > gaps[0] * 1.5, gaps
        # "Since" is the first failure, not the latest.
        assert appliance.json("status")["cloud"]["since"] == down["cloud"]["since"]

        with FakeCloud(cloud_data.root / "repos", {USER: code.password}, port=port):
            up = appliance.wait_status(
                lambda s: (
                    s["cloud"]["state"] == "ok"
                    and (s["last_jobs"]["mirror"] or {}).get("outcome") == "ok"
                ),
                "the mirror to succeed once the cloud is back",
                log=log,
            )
        assert up["cloud"]["attempts"] == 0
        mirror = drive_dir / "bluegrass" / USER / "docs.git"
        assert git("--git-dir", str(mirror), "rev-parse", "main").stdout.strip() == head
        assert proc.poll() is None
        assert stop(proc) == 0
    assert appliance.json("status")["daemon"]["running"] is False


def _jobs(appliance: Appliance) -> list[dict]:
    from bluegrass.appliance.state import State

    return State(appliance.state / "state.sqlite").jobs(limit=50, kind="mirror")


@pytest.mark.root
@pytest.mark.slow
def test_drive_pulled_mid_mirror_then_plugged_back(
    appliance: Appliance,
    cloud_data: CloudData,
    fake_cloud: FakeCloud,
    make_loop,
    udevd: str,
    tmp_path: Path,
) -> None:
    loop = make_loop(160)
    device = loop.attach()
    appliance("drive", "prepare", device, "--yes")
    loop.detach()
    folder = cloud_data.files("docs")
    for i in range(3):
        write_random(folder / f"part{i}.bin", 8 * 2**20)
    head = cloud_data.commit("docs")
    appliance.enroll(enrollment(fake_cloud.port))
    mountpoint = tmp_path / "mnt"
    # Only udev events may find the drive here (the periodic re-scan is an hour away).
    appliance.configure(
        f'[drive]\nmountpoint = "{mountpoint}"\n'
        '[schedule]\ndrive_check_every = "1h"\nretry_min = "1s"\n[files]\nenabled = false\n'
    )
    # The cloud stops after the first MB of the pack until the test has pulled the drive.
    fake_cloud.pause_after = 2**20
    log = tmp_path / "daemon.log"

    with appliance.daemon(log) as proc:
        appliance.wait_status(
            lambda s: s["daemon"]["running"] and s["daemon"]["monitor"] == "udev",
            "the daemon to listen to udev",
            log=log,
        )
        loop.attach()
        assert fake_cloud.paused.wait(60), log.read_text()
        busy = appliance.json("status")
        assert busy["drive"]["state"] == "ready", busy["drive"]
        assert busy["drive"]["found_by"].startswith("udev"), busy["drive"]
        assert busy["daemon"]["job"] == "mirror"
        assert drive.mount_at(mountpoint) is not None

        # Pull it: every I/O on the file system now fails, and the device is detached as
        # soon as nothing holds it (a mounted loop device detaches when unmounted).
        shutdown_fs(mountpoint)
        loop.detach()
        fake_cloud.resume.set()

        gone = appliance.wait_status(
            lambda s: s["drive"]["state"] == "missing", "the drive to be reported missing", log=log
        )
        assert proc.poll() is None, "the daemon died"
        assert "MISSING since " + gone["drive"]["since"] in appliance("status").stdout
        assert gone["last_jobs"]["mirror"]["outcome"] in ("drive-failed", "cancelled", "failed")
        # The daemon let go of the dead mount, so the kernel could detach the device.
        deadline = time.monotonic() + 30
        while loop.attached() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not loop.attached(), "the loop device is still held"
        assert drive.mount_at(mountpoint) is None

        loop.attach()
        back = appliance.wait_status(
            lambda s: (
                s["drive"]["state"] == "ready"
                and (s["last_jobs"]["mirror"] or {}).get("outcome") == "ok"
            ),
            "the mirror to complete after the drive came back",
            log=log,
        )
        assert back["drive"]["found_by"].startswith("udev")
        assert stop(proc) == 0
    # Stopped cleanly, the daemon unmounted the drive.
    assert drive.mount_at(mountpoint) is None
    # The kernel may release the block device a moment after umount returns (EBUSY until
    # then): retry for a bounded time rather than sleep.
    deadline = time.monotonic() + 30
    while True:
        argv = ["mount", "-o", "ro", loop.device or "", str(mountpoint)]
        mounted = subprocess.run(argv, capture_output=True, text=True)
        if mounted.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert mounted.returncode == 0, mounted.stderr
    try:
        mirror = mountpoint / "bluegrass" / USER / "docs.git"
        fsck(mirror)
        assert git("--git-dir", str(mirror), "rev-parse", "main").stdout.strip() == head
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


@pytest.mark.root
def test_ejected_drive_is_not_remounted_until_unplugged(
    appliance: Appliance,
    cloud_data: CloudData,
    fake_cloud: FakeCloud,
    make_loop,
    udevd: str,
    tmp_path: Path,
) -> None:
    loop = make_loop(32)
    device = loop.attach()
    appliance("drive", "prepare", device, "--yes")
    (cloud_data.files("docs") / "a.txt").write_text("a\n")
    cloud_data.commit("docs")
    appliance.enroll(enrollment(fake_cloud.port))
    mountpoint = tmp_path / "mnt"
    appliance.configure(
        f'[drive]\nmountpoint = "{mountpoint}"\n'
        '[schedule]\ndrive_check_every = "1s"\n[files]\nenabled = false\n'
    )
    log = tmp_path / "daemon.log"
    with appliance.daemon(log) as proc:
        # Already plugged in when the daemon starts: found by the start-up scan.
        ready = appliance.wait_status(
            lambda s: (s["last_jobs"]["mirror"] or {}).get("outcome") == "ok",
            "the first mirror",
            log=log,
        )
        assert ready["drive"]["found_by"] == "start-up scan"
        appliance("drive", "eject", "--wait", "30")
        appliance.wait_status(
            lambda s: s["drive"]["state"] == "ejected", "the daemon to see the eject", log=log
        )
        assert "safe to unplug" in appliance("status").stdout
        assert drive.mount_at(mountpoint) is None
        loop.detach()
        appliance.wait_status(
            lambda s: s["drive"]["state"] == "absent", "the unplug to be seen", log=log
        )
        loop.attach()
        # Its udev event and the 1 s re-scan race here; the pull test above proves the event.
        appliance.wait_status(
            lambda s: s["drive"]["state"] == "ready", "the drive to be mounted again", log=log
        )
        assert drive.mount_at(mountpoint) is not None
        assert stop(proc) == 0
    assert drive.mount_at(mountpoint) is None
