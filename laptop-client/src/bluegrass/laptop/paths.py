"""Where the laptop client keeps its files, per platform (no platformdirs: three rules suffice).

| platform | configuration                          | state (sync state, logs)             |
| -------- | -------------------------------------- | ------------------------------------ |
| Linux    | $XDG_CONFIG_HOME/bluegrass             | $XDG_STATE_HOME/bluegrass            |
|          | (else ~/.config/bluegrass)             | (else ~/.local/state/bluegrass)      |
| macOS    | ~/Library/Application Support/Bluegrass (both)                                |
| Windows  | %APPDATA%\\Bluegrass                    | %LOCALAPPDATA%\\Bluegrass             |

An XDG variable that is unset, empty or relative is ignored, as the XDG spec asks.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from bluegrass.core.errors import BluegrassError

CONFIG_FILE = "bluegrass.toml"
RCLONE_CONFIG = "rclone.conf"
DEVICE_PASSWORD = "device-password"  # noqa: S105 (a file name)
KNOWN_HOSTS = "known_hosts"


def platform_name(platform: str | None = None) -> str:
    """'linux', 'macos' or 'windows' (any other POSIX system is treated like Linux)."""
    platform = platform or sys.platform
    if platform == "darwin":
        return "macos"
    if platform in ("win32", "cygwin"):
        return "windows"
    return "linux"


def _home() -> Path:
    try:
        return Path.home()
    except RuntimeError as exc:  # no HOME and no password entry
        raise BluegrassError("cannot find your home folder (set HOME)") from exc


def _xdg(variable: str, fallback: tuple[str, ...]) -> Path:
    value = os.environ.get(variable, "")
    if value and Path(value).is_absolute():
        return Path(value) / "bluegrass"
    return _home().joinpath(*fallback, "bluegrass")


def _windows(variable: str) -> Path:
    value = os.environ.get(variable, "")
    if not value:
        raise BluegrassError(f"%{variable}% is not set; cannot place Bluegrass's files")
    return Path(value) / "Bluegrass"


@dataclass(frozen=True)
class Places:
    config_dir: Path
    state_dir: Path

    @property
    def config_file(self) -> Path:
        return self.config_dir / CONFIG_FILE

    @property
    def rclone_config(self) -> Path:
        return self.config_dir / RCLONE_CONFIG

    @property
    def known_hosts(self) -> Path:
        return self.config_dir / KNOWN_HOSTS

    @property
    def device_password(self) -> Path:
        """The device's password in clear (mode 0600, like rclone.conf, which holds it merely
        obscured): for the cloud's pinned device port, which rclone does not talk to."""
        return self.config_dir / DEVICE_PASSWORD

    def segment_state(self, segment: str) -> Path:
        return self.state_dir / "segments" / segment

    @property
    def daemon_lock(self) -> Path:
        return self.state_dir / "daemon.lock"

    @property
    def daemon_info(self) -> Path:
        return self.state_dir / "daemon.json"


def places(platform: str | None = None) -> Places:
    kind = platform_name(platform)
    if kind == "macos":
        base = _home() / "Library" / "Application Support" / "Bluegrass"
        return Places(base, base)
    if kind == "windows":
        return Places(_windows("APPDATA"), _windows("LOCALAPPDATA"))
    return Places(
        _xdg("XDG_CONFIG_HOME", (".config",)),
        _xdg("XDG_STATE_HOME", (".local", "state")),
    )


def make_private_dir(path: Path) -> Path:
    """Create `path` (and parents) readable by this user only where the OS has modes."""
    path.mkdir(parents=True, exist_ok=True)
    if os.name == "posix":
        path.chmod(0o700)
    return path
