"""`bluegrass service install`: a valid service file per platform, never enabled silently."""

from __future__ import annotations

import os
import plistlib
import subprocess
import sys
import xml.etree.ElementTree as ET

from bluegrass.laptop import service

from tests.conftest import require_tool
from tests.laptop.conftest import Laptop, one_line_error

TASK_NS = "{http://schemas.microsoft.com/windows/2004/02/mit/task}"


def shown_file(stdout: str) -> str:
    """The file body printed by --dry-run, between its two comment blocks."""
    lines = stdout.splitlines()
    assert lines[0].startswith("# would write ")
    end = lines.index("# then start it with:")
    return "\n".join(lines[1:end]) + "\n"


def test_dry_run_prints_and_writes_nothing(laptop: Laptop):
    out = laptop.run("service", "install", "--dry-run").stdout
    unit = laptop.home / ".config" / "systemd" / "user" / "bluegrass.service"
    assert out.startswith(f"# would write {unit}\n")
    assert "#   systemctl --user enable --now bluegrass.service" in out
    assert "ExecStart=" in shown_file(out)
    assert not unit.exists()


def test_install_writes_a_unit_systemd_accepts(laptop: Laptop, tmp_path):
    out = laptop.run("service", "install").stdout
    unit = laptop.home / ".config" / "systemd" / "user" / "bluegrass.service"
    assert f"Wrote {unit}" in out
    assert "systemctl --user enable --now bluegrass.service" in out
    text = unit.read_text()
    assert f'ExecStart="{sys.executable}" "-m" "bluegrass.laptop" "run"' in text
    assert "KillMode=mixed" in text and "TimeoutStopSec=120" in text

    analyze = require_tool("systemd-analyze")
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    proc = subprocess.run(
        [analyze, "verify", "--user", str(unit)],
        capture_output=True,
        text=True,
        env={**laptop.env, "XDG_RUNTIME_DIR": str(runtime)},
    )
    # verify prints warnings (an unknown key, a bad value) and still exits 0: both must be clean.
    assert proc.returncode == 0, proc.stderr
    assert str(unit) not in proc.stderr and "bluegrass.service" not in proc.stderr, proc.stderr


def test_the_unit_quotes_awkward_paths():
    text = service.systemd_unit(["/opt/my apps/py%thon$", "-m", "bluegrass.laptop", "run"])
    assert 'ExecStart="/opt/my apps/py%%thon$$" "-m" "bluegrass.laptop" "run"' in text


def test_the_macos_plist_parses(laptop: Laptop):
    out = laptop.run("service", "install", "--dry-run", "--platform", "macos").stdout
    assert f"# would write {laptop.home}/Library/LaunchAgents/org.bluegrass.client.plist" in out
    assert "launchctl bootstrap gui/$(id -u)" in out
    plist = plistlib.loads(shown_file(out).encode())
    assert plist["Label"] == "org.bluegrass.client"
    assert plist["ProgramArguments"] == [sys.executable, "-m", "bluegrass.laptop", "run"]
    assert plist["RunAtLoad"] is True
    assert plist["ExitTimeOut"] == 120


def test_the_windows_task_xml_parses():
    content = service.task_xml(
        ["C:\\Py 3\\pythonw.exe", "-m", "bluegrass.laptop", "run"], "PC\\ann"
    )
    assert content.startswith(b"\xff\xfe")  # UTF-16 with a byte-order mark, for schtasks
    root = ET.fromstring(content)
    assert root.tag == f"{TASK_NS}Task"
    assert root.find(f"{TASK_NS}Triggers/{TASK_NS}LogonTrigger/{TASK_NS}UserId").text == "PC\\ann"
    exec_ = root.find(f"{TASK_NS}Actions/{TASK_NS}Exec")
    assert exec_.find(f"{TASK_NS}Command").text == "C:\\Py 3\\pythonw.exe"
    assert exec_.find(f"{TASK_NS}Arguments").text == "-m bluegrass.laptop run"
    settings = root.find(f"{TASK_NS}Settings")
    assert settings.find(f"{TASK_NS}ExecutionTimeLimit").text == "PT0S"
    assert settings.find(f"{TASK_NS}MultipleInstancesPolicy").text == "IgnoreNew"


def test_windows_dry_run_from_the_command_line(laptop: Laptop):
    env_out = laptop.run("service", "install", "--dry-run", "--platform", "windows").stdout
    assert "schtasks /Create /TN Bluegrass /XML" in env_out
    body = shown_file(env_out)
    root = ET.fromstring(body.replace('encoding="UTF-16"', 'encoding="UTF-8"').encode())
    assert root.tag == f"{TASK_NS}Task"


def test_another_platform_is_only_shown(laptop: Laptop):
    proc = laptop.run("service", "install", "--platform", "macos", check=False)
    assert proc.returncode == 2
    assert "--dry-run" in one_line_error(proc)
    assert not (laptop.home / "Library").exists()
    assert os.listdir(laptop.home) == []
