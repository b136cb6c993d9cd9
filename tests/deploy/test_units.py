"""The cloud server's systemd unit for hosts without Docker: verified by systemd itself, and
holding the promises docs/deploy.md makes (dedicated user, hardening, a graceful stop)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, require_tool
from tests.image.conftest import require_root

UNIT = ROOT / "deploy" / "systemd" / "bluegrass-cloud.service"
SYSUSERS = ROOT / "deploy" / "systemd" / "bluegrass-cloud.sysusers"


def settings(unit: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def verify(unit_text: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """systemd-analyze verify against a root holding the unit and a stand-in executable, with
    the host's /usr (for the targets and units it refers to) bound in read-only."""
    analyze = require_tool("systemd-analyze")
    require_root()
    root = tmp_path / "root"
    (root / "opt/bluegrass-cloud/bin").mkdir(parents=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "usr").mkdir()
    exe = root / "opt/bluegrass-cloud/bin/bluegrass-cloud"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    (root / "etc/systemd/system" / UNIT.name).write_text(unit_text)
    script = (
        'mount --bind -o ro /usr "$1/usr" && '
        'exec "$2" verify --man=no --root="$1" /etc/systemd/system/bluegrass-cloud.service'
    )
    return subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
            *(str(root), analyze),
        ],
        capture_output=True,
        text=True,
    )


def test_systemd_analyze_verify_clean(tmp_path: Path) -> None:
    done = verify(UNIT.read_text(), tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout + done.stderr == ""


def test_verify_would_catch_a_broken_unit(tmp_path: Path) -> None:
    broken = UNIT.read_text().replace(
        "ExecStart=/opt/bluegrass-cloud/bin/", "ExecStart=/opt/bluegrass-cloud/bni/"
    )
    done = verify(broken, tmp_path)
    assert done.returncode != 0
    assert "not executable" in done.stderr


def test_runs_the_cloud_as_its_own_user_on_var_lib_bluegrass() -> None:
    unit = settings(UNIT)
    assert unit["User"] == ["bluegrass"] and unit["Group"] == ["bluegrass"]
    assert unit["ExecStart"] == [
        "/opt/bluegrass-cloud/bin/bluegrass-cloud --data /var/lib/bluegrass run"
    ]
    assert unit["StateDirectory"] == ["bluegrass"]
    assert unit["ReadWritePaths"] == ["/var/lib/bluegrass"]
    assert unit["Environment"] == ["BLUEGRASS_DATA=/var/lib/bluegrass"]
    assert SYSUSERS.read_text().splitlines()[-1].split()[:2] == ["u", "bluegrass"]


def test_hardening() -> None:
    unit = settings(UNIT)
    for key, value in {
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectHome": "yes",
        "RestrictSUIDSGID": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert unit.get(key) == [value], key


def test_stop_gives_rclone_time_to_finish() -> None:
    unit = settings(UNIT)
    seconds = int(re.fullmatch(r"(\d+)s?", unit["TimeoutStopSec"][0]).group(1))
    assert seconds >= 90
    assert unit["KillSignal"] == ["SIGTERM"]
    assert unit["KillMode"] == ["mixed"]


def test_sysusers_file_is_accepted(tmp_path: Path) -> None:
    sysusers = require_tool("systemd-sysusers")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    for name in ("passwd", "group", "shadow", "gshadow"):
        (root / "etc" / name).write_text("")
    done = subprocess.run(
        [sysusers, f"--root={root}", str(SYSUSERS)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    line = (root / "etc/passwd").read_text()
    assert line.startswith("bluegrass:x:") and line.rstrip().endswith(
        ":/var/lib/bluegrass:/usr/sbin/nologin"
    )


@pytest.mark.parametrize("line", ["Restart=on-failure", "RestartPreventExitStatus=2"])
def test_restart_policy(line: str) -> None:
    assert line in UNIT.read_text().splitlines()
