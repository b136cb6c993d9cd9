"""The cloud's configuration file, DATA/bluegrass-cloud.toml, and its schema."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from bluegrass.core import config
from bluegrass.core.config import Field, Table, TableMap
from bluegrass.core.names import NAME_PATTERN

FILENAME = "bluegrass-cloud.toml"

_SHARE = "a number above 0 and at most 1 (a share of files, e.g. 0.3)"
_SNAPSHOT = {
    "suspicious_share": Field(
        (int, float),
        0.30,
        _SHARE,
        config.is_share,
        doc="A snapshot that deletes or changes more than this share of files is flagged.",
    ),
}
_CLOCK = 'a local time "HH:MM" (24-hour)'
# The same keys for one segment; unset (None) means "as in [snapshot]" / "as in [schedule]".
_SEGMENT_OVERRIDE = {
    "suspicious_share": Field((int, float), None, _SHARE, config.is_share),
    "commit_at": Field(str, None, _CLOCK, config.is_clock_time),
}

_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def is_host(value: str) -> bool:
    """An IP address or a DNS host name: what a client can connect to, or we can bind."""
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        pass
    name = value.removesuffix(".")
    return 0 < len(name) <= 253 and all(_LABEL.fullmatch(label) for label in name.split("."))


def is_port(value: int) -> bool:
    return 0 < value < 65536


_HOST = "a host name or an IP address (e.g. backup.example.org or 192.0.2.10)"
_PORT = "a TCP port number from 1 to 65535"
_SERVER = {
    "address": Field(
        str,
        "127.0.0.1",
        _HOST,
        is_host,
        doc="The host name or IP address devices connect to; it goes into enrollment codes.",
    ),
    "bind": Field(
        str,
        "127.0.0.1",
        _HOST.replace("e.g. backup.example.org or 192.0.2.10", "0.0.0.0 for every interface"),
        is_host,
        doc="The local address the sync endpoint and the web server listen on.",
    ),
    "sftp_port": Field(
        int, 2022, _PORT, is_port, doc="The sync endpoint's port (rclone serve sftp)."
    ),
    "http_port": Field(
        int, 8080, _PORT, is_port, doc="The web UI's port (plain http, or behind a TLS proxy)."
    ),
    "device_port": Field(
        int,
        8443,
        _PORT,
        is_port,
        doc="The devices' port: the HTTP side over TLS with this server's own key, which "
        "enrollment codes pin; devices send their passwords over HTTP only here.",
    ),
    "public_url": Field(
        str,
        "",
        'empty, or a base URL such as "https://backup.example.org" (no path)',
        lambda value: value == "" or config.is_http_base(value),
        doc="The web UI's address when a TLS proxy is in front of http_port; it goes into "
        "enrollment codes for people to find the site. Devices never send their passwords "
        "there (they use device_port). Empty: http://ADDRESS:HTTP_PORT.",
    ),
}

_BOOL = "true or false"
_WEB = {
    "secure_cookies": Field(
        bool,
        False,
        _BOOL,
        doc="Reached over HTTPS (e.g. through a TLS proxy): Secure cookies and HSTS.",
    ),
    "trust_proxy": Field(
        bool,
        False,
        _BOOL,
        doc="Trust one proxy's X-Forwarded-For/-Proto; only behind a proxy that sets them.",
    ),
}

SCHEMA = Table(
    {
        "snapshot": Table(dict(_SNAPSHOT), doc="How snapshots are taken."),
        "schedule": Table(
            {
                "commit_at": Field(
                    str,
                    "03:00",
                    _CLOCK,
                    config.is_clock_time,
                    doc="When the daily commit of every segment runs.",
                ),
                "upload_wait_minutes": Field(
                    int,
                    120,
                    "a whole number of minutes from 0 to 1440",
                    lambda v: 0 <= v <= 1440,
                    doc="How long a daily commit waits for uploads into the segment to end (a "
                    "partial upload in it; ended once none was seen for a minute); then it "
                    "commits without the files in flight (0: never waits).",
                ),
            },
            doc="When jobs run.",
        ),
        "server": Table(dict(_SERVER), doc="Where devices reach this server."),
        "web": Table(dict(_WEB), doc="The web interface (served on [server] http_port)."),
        "segments": TableMap(
            Table(dict(_SEGMENT_OVERRIDE)),
            key_pattern=rf"{NAME_PATTERN}/{NAME_PATTERN}",
            key_expected='a "user/segment" name, e.g. [segments."alice/photos"]',
            doc='Per-segment overrides of [snapshot] and [schedule], keyed "user/segment".',
        ),
    }
)

HEADER = """Bluegrass cloud configuration. Every key is optional; shown with its default.
Documented in docs/configuration.md."""


def load(data_root: Path) -> config.Config:
    return config.load(data_root / FILENAME, SCHEMA)


def suspicious_share(cfg: config.Config, user: str, segment: str) -> float:
    override = cfg.get("segments").get(f"{user}/{segment}", {})
    if override.get("suspicious_share") is not None:
        return override["suspicious_share"]
    return cfg.get("snapshot.suspicious_share")


def commit_at(cfg: config.Config, user: str, segment: str) -> str:
    override = cfg.get("segments").get(f"{user}/{segment}", {})
    if override.get("commit_at") is not None:
        return override["commit_at"]
    return cfg.get("schedule.commit_at")


def default_text() -> str:
    return config.render_defaults(SCHEMA, HEADER)
