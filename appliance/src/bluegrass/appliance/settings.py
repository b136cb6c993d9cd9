"""The appliance's state folder, its configuration file and that file's schema.

STATE (default /var/lib/bluegrass-appliance, else $BLUEGRASS_APPLIANCE_STATE or --state):

    bluegrass-appliance.toml   settings a person edits (checked by bluegrass.core.config)
    enrollment.json            the pasted enrollment code, 0600 (written by `enroll`)
    state.sqlite               jobs, results, alerts, the daemon's view of drive and cloud
    rclone.conf, known_hosts   written before each file pull from the enrollment, 0600
    job.lock                   one job at a time, daemon or command line
    panel-secret.key           signs the panel's session cookies, 0600 (made by `run`)
    panel-setup-code           the panel's one-time setup code while setup is pending, 0600
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from bluegrass.appliance import notifications
from bluegrass.core import config, notify
from bluegrass.core.config import Field, Table

FILENAME = "bluegrass-appliance.toml"
DEFAULT_STATE = Path("/var/lib/bluegrass-appliance")
STATE_ENV = "BLUEGRASS_APPLIANCE_STATE"

_DURATION = re.compile(r"([1-9]\d*)(s|m|h|d)")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION_EXPECTED = 'a duration like "90s", "15m", "1h" or "1d"'


def is_duration(value: str) -> bool:
    return _DURATION.fullmatch(value) is not None


def seconds(value: str) -> int:
    found = _DURATION.fullmatch(value)
    if found is None:
        raise ValueError(f"not a duration: {value!r}")
    return int(found.group(1)) * _UNITS[found.group(2)]


def _is_label(value: str) -> bool:
    # ext4 labels are at most 16 bytes; keep to characters that survive udev's escaping.
    return re.fullmatch(r"[A-Za-z0-9_-]{1,16}", value) is not None


def _is_abs_or_empty(value: str) -> bool:
    return value == "" or value.startswith("/")


def _is_url(value: str) -> bool:
    # https only, checked as the enrollment's own url is (no user:password@, no path): the
    # device password goes only to the pinned HTTPS device port, never over plain http.
    return (
        value == ""
        or (value.startswith("https://") and config.is_http_base(value))
        or re.fullmatch(r"file:///\S*", value) is not None
    )


_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def is_host(value: str) -> bool:
    """An IP address or a host name this machine can listen on."""
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        pass
    name = value.removesuffix(".")
    return 0 < len(name) <= 253 and all(_LABEL.fullmatch(label) for label in name.split("."))


def is_port(value: int) -> bool:
    """A TCP port; 0 asks for any free one."""
    return 0 <= value < 65536


def _duration(default: str, doc: str) -> Field:
    return Field(str, default, DURATION_EXPECTED, is_duration, doc=doc)


SCHEMA = Table(
    {
        "schedule": Table(
            {
                "mirror_every": _duration("1h", "How often every history is mirrored."),
                "files_every": _duration("15m", "How often the latest files are pulled."),
                "retry_min": _duration(
                    "1m", "First wait after the cloud could not be reached; doubles each time."
                ),
                "retry_max": _duration("1h", "Longest wait between tries to reach the cloud."),
                "drive_check_every": _duration(
                    "30s", "How often a mounted drive is checked, and a missing one looked for."
                ),
                "health_every": _duration("1m", "How often disk, memory and heat are recorded."),
            },
            doc="When jobs run.",
        ),
        "drive": Table(
            {
                "label": Field(
                    str,
                    "BLUEGRASS",
                    "1-16 characters of A-Z, a-z, 0-9, - and _",
                    _is_label,
                    doc="The file-system label `drive prepare` writes and the daemon looks for.",
                ),
                "mountpoint": Field(
                    str,
                    "/media/bluegrass",
                    "an absolute path",
                    lambda v: v.startswith("/"),
                    doc="Where the daemon mounts the drive.",
                ),
                "dir": Field(
                    str,
                    "",
                    "an absolute path, or empty",
                    _is_abs_or_empty,
                    doc="A plain folder standing in for the drive (no detection, no mounting).",
                ),
                "id": Field(
                    str,
                    "",
                    'a drive id like "bgd-0123456789abcdef", or empty',
                    lambda v: v == "" or re.fullmatch(r"bgd-[0-9a-f]{16}", v) is not None,
                    doc="Accept only the drive with this id (empty: any prepared drive).",
                ),
                "low_space_percent": Field(
                    (int, float),
                    5,
                    "a number from 0 to 50",
                    lambda v: 0 <= v <= 50,
                    doc="Raise an alert when the drive's free space falls below this share.",
                ),
            },
            doc="The backup drive.",
        ),
        "cloud": Table(
            {
                "url": Field(
                    str,
                    "",
                    'empty (use the enrollment), "https://HOST[:PORT]" or "file:///DATA"',
                    _is_url,
                    doc="Where histories come from: empty for the cloud's device port named by "
                    "the enrollment code; https://HOST:PORT for another address of that port "
                    "(its key must still match the code's pin, so not a TLS proxy); "
                    "file:///DATA mirrors a cloud data root on this machine (embedded setup).",
                ),
                "timeout": _duration("30s", "How long to wait for the cloud to answer."),
            },
            doc="The cloud server.",
        ),
        "files": Table(
            {
                "enabled": Field(bool, True, "true or false", doc="Pull the latest files too."),
                "transfers": Field(
                    int,
                    2,
                    "a whole number from 1 to 16",
                    lambda v: 1 <= v <= 16,
                    doc="Files copied at once (each costs memory on a small Pi).",
                ),
            },
            doc="The latest plain files, pulled with rclone.",
        ),
        "panel": Table(
            {
                "enabled": Field(
                    bool,
                    True,
                    "true or false",
                    doc="Serve the web panel (status, browse, restore) from `run`.",
                ),
                "bind": Field(
                    str,
                    "0.0.0.0",  # noqa: S104 - the panel is for the home network
                    "an IP address or a host name",
                    is_host,
                    doc="The address the panel listens on; 0.0.0.0 is every address on the LAN.",
                ),
                "port": Field(
                    int,
                    8080,
                    "a TCP port number from 0 to 65535 (0: any free port)",
                    is_port,
                    doc="The panel's port. Below 1024 (80) needs root, as the daemon has on a Pi.",
                ),
                "console_issue": Field(
                    str,
                    "",
                    "an absolute path, or empty",
                    _is_abs_or_empty,
                    doc="Where `run` writes the panel's setup code for the login console while "
                    "setup is pending (the image: /etc/issue.d/bluegrass-setup.issue); empty: "
                    "nowhere.",
                ),
            },
            doc="The web panel on the home network.",
        ),
        "health": Table(
            {
                "max_temperature": Field(
                    (int, float),
                    80,
                    "degrees Celsius from 40 to 110",
                    lambda v: 40 <= v <= 110,
                    doc="Raise an alert when the CPU is hotter than this.",
                ),
            },
            doc="Health checks.",
        ),
        "notify": notifications.SCHEMA,
    }
)

HEADER = """Bluegrass appliance configuration. Every key is optional; shown with its default.
Documented in docs/appliance.md and docs/configuration.md."""


@dataclass(frozen=True)
class Paths:
    state: Path

    @classmethod
    def resolve(cls, state: str | None) -> Paths:
        chosen = state or os.environ.get(STATE_ENV) or str(DEFAULT_STATE)
        return cls(Path(chosen).absolute())

    @property
    def config(self) -> Path:
        return self.state / FILENAME

    @property
    def enrollment(self) -> Path:
        return self.state / "enrollment.json"

    @property
    def database(self) -> Path:
        return self.state / "state.sqlite"

    @property
    def job_lock(self) -> Path:
        return self.state / "job.lock"

    @property
    def rclone_config(self) -> Path:
        return self.state / "rclone.conf"

    @property
    def known_hosts(self) -> Path:
        return self.state / "known_hosts"

    @property
    def panel_secret(self) -> Path:
        return self.state / "panel-secret.key"

    @property
    def setup_code(self) -> Path:
        return self.state / "panel-setup-code"

    def ensure(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True, mode=0o700)


def load(paths: Paths) -> config.Config:
    cfg = config.load(paths.config, SCHEMA)
    notify.check(cfg, notifications.ROLE)
    return cfg


def default_text() -> str:
    return config.render_defaults(SCHEMA, HEADER)
