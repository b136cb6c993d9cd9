"""Service files that start `bluegrass run` at login, one per platform.

- Linux: a systemd user unit, ~/.config/systemd/user/bluegrass.service. systemd stops it with
  SIGTERM to the daemon alone (KillMode=mixed), which hands it on to rclone once; rclone may
  take 30 s to finish transfers and 60 s to save state, hence TimeoutStopSec=120.
- macOS: a launchd agent, ~/Library/LaunchAgents/org.bluegrass.client.plist.
- Windows: a Task Scheduler task (XML, UTF-16) started at logon, written to
  %LOCALAPPDATA%\\Bluegrass\\bluegrass-task.xml and registered with `schtasks /Create /XML`.

The daemon is started as `PYTHON -m bluegrass.laptop run`, with the Python that runs this
command: no dependence on PATH or on where pip put the `bluegrass` script.
"""

from __future__ import annotations

import os
import plistlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from bluegrass.laptop import paths

LABEL = "org.bluegrass.client"
UNIT = "bluegrass.service"
TASK = "Bluegrass"
DESCRIPTION = "Bluegrass: keeps your chosen folders in two-way sync with your Bluegrass cloud"


@dataclass(frozen=True)
class ServiceFile:
    platform: str
    path: Path
    content: bytes
    enable: list[str]  # what to type to start it now and at every login


def daemon_argv(platform: str) -> list[str]:
    python = Path(sys.executable)
    if platform == "windows":
        windowless = python.with_name("pythonw.exe")
        if windowless.exists():
            python = windowless  # no console window at every logon
    return [str(python), "-m", "bluegrass.laptop", "run"]


def _systemd_quote(arg: str) -> str:
    text = arg.replace("\\", "\\\\").replace('"', '\\"')
    text = text.replace("%", "%%").replace("$", "$$")
    return f'"{text}"'


def systemd_unit(argv: list[str]) -> str:
    return f"""[Unit]
Description={DESCRIPTION}

[Service]
Type=exec
ExecStart={" ".join(_systemd_quote(a) for a in argv)}
Environment=PYTHONUNBUFFERED=1
Restart=on-failure
RestartSec=60
# Exit status 2 is a configuration problem (or not enrolled yet): restarting will not help.
RestartPreventExitStatus=2
# SIGTERM to the daemon only; it asks rclone to finish gracefully (up to 90 s).
KillMode=mixed
KillSignal=SIGTERM
TimeoutStopSec=120

[Install]
WantedBy=default.target
"""


def launchd_plist(argv: list[str], log_file: Path) -> bytes:
    return plistlib.dumps(
        {
            "Label": LABEL,
            "ProgramArguments": argv,
            "RunAtLoad": True,
            "KeepAlive": {"SuccessfulExit": False},
            "ThrottleInterval": 60,
            "ProcessType": "Background",
            "ExitTimeOut": 120,
            "EnvironmentVariables": {"PYTHONUNBUFFERED": "1"},
            "StandardOutPath": str(log_file),
            "StandardErrorPath": str(log_file),
        }
    )


def task_xml(argv: list[str], user: str | None) -> bytes:
    user_id = f"<UserId>{escape(user)}</UserId>" if user else ""
    arguments = escape(subprocess.list2cmdline(argv[1:]))
    text = f"""<?xml version="1.0" encoding="UTF-16"?>
<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">
  <RegistrationInfo>
    <Description>{escape(DESCRIPTION)}</Description>
    <URI>\\{TASK}</URI>
  </RegistrationInfo>
  <Triggers>
    <LogonTrigger>
      <Enabled>true</Enabled>
      {user_id}
    </LogonTrigger>
  </Triggers>
  <Principals>
    <Principal id="Author">
      {user_id}
      <LogonType>InteractiveToken</LogonType>
      <RunLevel>LeastPrivilege</RunLevel>
    </Principal>
  </Principals>
  <Settings>
    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>
    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>
    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>
    <AllowHardTerminate>true</AllowHardTerminate>
    <StartWhenAvailable>true</StartWhenAvailable>
    <RunOnlyIfNetworkAvailable>false</RunOnlyIfNetworkAvailable>
    <IdleSettings>
      <StopOnIdleEnd>false</StopOnIdleEnd>
      <RestartOnIdle>false</RestartOnIdle>
    </IdleSettings>
    <AllowStartOnDemand>true</AllowStartOnDemand>
    <Enabled>true</Enabled>
    <Hidden>false</Hidden>
    <RunOnlyIfIdle>false</RunOnlyIfIdle>
    <ExecutionTimeLimit>PT0S</ExecutionTimeLimit>
    <Priority>7</Priority>
    <RestartOnFailure>
      <Interval>PT1M</Interval>
      <Count>3</Count>
    </RestartOnFailure>
  </Settings>
  <Actions Context="Author">
    <Exec>
      <Command>{escape(argv[0])}</Command>
      <Arguments>{arguments}</Arguments>
    </Exec>
  </Actions>
</Task>
"""
    return text.encode("utf-16")  # with a byte-order mark, as schtasks expects


def _windows_user() -> str | None:
    user = os.environ.get("USERNAME")
    domain = os.environ.get("USERDOMAIN")
    if user and domain:
        return f"{domain}\\{user}"
    return user


def service_file(platform: str) -> ServiceFile:
    argv = daemon_argv(platform)
    home = Path.home()
    if platform == "linux":
        config_home = os.environ.get("XDG_CONFIG_HOME", "")
        base = Path(config_home) if config_home and Path(config_home).is_absolute() else None
        path = (base or home / ".config") / "systemd" / "user" / UNIT
        return ServiceFile(
            platform,
            path,
            systemd_unit(argv).encode(),
            ["systemctl --user daemon-reload", f"systemctl --user enable --now {UNIT}"],
        )
    if platform == "macos":
        path = home / "Library" / "LaunchAgents" / f"{LABEL}.plist"
        log = home / "Library" / "Logs" / "Bluegrass" / "bluegrass.log"
        return ServiceFile(
            platform,
            path,
            launchd_plist(argv, log),
            [f'launchctl bootstrap gui/$(id -u) "{path}"'],
        )
    if platform == "windows":
        local = os.environ.get("LOCALAPPDATA")
        base = Path(local) / "Bluegrass" if local else home / "AppData" / "Local" / "Bluegrass"
        path = base / "bluegrass-task.xml"
        return ServiceFile(
            platform,
            path,
            task_xml(argv, _windows_user()),
            [f'schtasks /Create /TN {TASK} /XML "{path}"', f"schtasks /Run /TN {TASK}"],
        )
    raise ValueError(platform)


def this_platform() -> str:
    return paths.platform_name()
