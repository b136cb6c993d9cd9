"""The command line's edges: enrollment, configuration errors, eject, health."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import stat
import subprocess
from pathlib import Path

import pytest
from bluegrass.appliance import drive, health
from bluegrass.appliance.readme import FORMAT, format_text

from tests.appliance.conftest import Appliance, enrollment

ROOT = Path(__file__).resolve().parents[2]


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("bluegrass-appliance: error: "), lines[0]
    return lines[0]


def test_enroll_warns_when_the_code_has_no_pinned_https_key(appliance: Appliance) -> None:
    # A code made before the cloud had a device port: the appliance will send its password
    # nowhere over HTTP, on a LAN or not, and says so at once.
    unpinned = dataclasses.replace(enrollment(8443), device_port=0, tls_pin="")
    proc = appliance("enroll", unpinned.encode(), "--json")
    assert "warning: this code has no pinned HTTPS key" in proc.stderr
    assert "bluegrass-cloud device add" in proc.stderr
    assert json.loads(proc.stdout)["device_url"] is None
    # A pinned code: nothing to warn about; the device side is the code's https port.
    proc = appliance("enroll", enrollment(8443).encode(), "--json")
    assert proc.stderr == ""
    assert json.loads(proc.stdout)["device_url"] == "https://127.0.0.1:8443"


def test_enroll_stores_the_code_privately_and_status_shows_it(appliance: Appliance) -> None:
    code = enrollment(8080)
    done = appliance.json("enroll", code.encode())
    assert done["user"] == "alice" and done["server"] == "127.0.0.1"
    stored = appliance.state / "enrollment.json"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert json.loads(stored.read_text())["code"] == code.encode()
    # enroll writes the commented default settings once.
    assert "# mirror_every = " in (appliance.state / "bluegrass-appliance.toml").read_text()
    status = appliance("status").stdout
    assert "Enrolled: alice on 127.0.0.1" in status and "Daemon: not running" in status


def test_bad_enrollment_code_and_not_enrolled(appliance: Appliance, tmp_path: Path) -> None:
    bad = appliance("enroll", "bg1-garbage!!", check=False)
    assert "damaged" in one_line_error(bad) and bad.returncode == 2
    appliance.global_args = ["--drive-dir", str(tmp_path / "d")]
    missing = appliance("mirror", check=False)
    assert "not enrolled" in one_line_error(missing) and missing.returncode == 2


def test_bad_configuration_names_file_key_and_expectation(appliance: Appliance) -> None:
    appliance.configure('[schedule]\nmirror_every = "hourly"\n')
    proc = appliance("status", check=False)
    line = one_line_error(proc)
    assert str(appliance.state / "bluegrass-appliance.toml") in line
    assert "schedule.mirror_every" in line and '"1h"' in line and "'hourly'" in line
    assert proc.returncode == 2
    appliance.configure("[drive]\nlable = 'X'\n")
    assert "unknown key 'drive.lable'" in one_line_error(appliance("status", check=False))
    # No user:password@ in the cloud's address: the device signs in with its own credential.
    appliance.configure('[cloud]\nurl = "https://pi:secret@backup.example.org"\n')
    assert "cloud.url" in one_line_error(appliance("status", check=False))
    # Nor plain http: the device password goes only to the pinned HTTPS port.
    appliance.configure('[cloud]\nurl = "http://backup.example.org:8080"\n')
    line = one_line_error(appliance("status", check=False))
    assert "cloud.url" in line and '"https://HOST[:PORT]"' in line


@pytest.mark.root
def test_eject_refuses_while_a_job_runs_then_unmounts(
    appliance: Appliance, make_loop, tmp_path: Path
) -> None:
    loop = make_loop(32)
    device = loop.attach()
    mountpoint = tmp_path / "mnt"
    appliance.configure(f'[drive]\nmountpoint = "{mountpoint}"\n')
    appliance("drive", "prepare", device, "--yes")
    mountpoint.mkdir()
    subprocess.run(["mount", device, str(mountpoint)], check=True)
    status = appliance.json("drive", "status")
    assert status["present"] and status["mounted"] and status["device"] == device
    assert status["id"].startswith("bgd-") and status["space"]["total"] > 0

    # A job holds the lock (as the daemon's would): eject refuses and leaves the drive.
    with (appliance.state / "job.lock").open("a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        busy = appliance("drive", "eject", check=False)
        assert "another job is running" in one_line_error(busy)
        assert drive.mount_at(mountpoint) is not None

    done = appliance("drive", "eject")
    assert "you can unplug it now" in done.stdout
    assert drive.mount_at(mountpoint) is None
    after = appliance.json("drive", "status")
    assert after["present"] and not after["mounted"]


def test_health_snapshot_has_disk_memory_load(tmp_path: Path) -> None:
    found = health.snapshot(tmp_path)
    assert found["drive"]["total"] > 0 and 0 <= found["drive"]["free_percent"] <= 100
    assert found["memory"]["available"] > 0 and len(found["load"]) == 3
    assert found["cpu_temperature"] is None or isinstance(found["cpu_temperature"], float)
    full = {**found, "drive": {**found["drive"], "free_percent": 1.0}, "cpu_temperature": 90.0}
    kinds = [kind for kind, _ in health.problems(full, 5, 80)]
    assert kinds == ["drive-low", "hot"]


def test_the_drive_gets_the_current_repository_format() -> None:
    # The package ships a copy of docs/repository-format.md for the drive: keep them equal.
    # (A copy, not a symlink: the appliance must build from its own folder, e.g. for the image.)
    assert format_text() == (ROOT / "docs" / FORMAT).read_bytes(), (
        "docs/repository-format.md changed: cp docs/repository-format.md "
        "appliance/src/bluegrass/appliance/data/"
    )
