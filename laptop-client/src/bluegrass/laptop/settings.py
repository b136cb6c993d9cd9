"""The laptop's configuration file, bluegrass.toml, its schema, and writing it back.

`bluegrass enroll` fills [server]; `bluegrass segment add|remove` edits [segments.NAME]. The
file holds no secret: the device's password lives only in rclone.conf (obscured, mode 0600).
Commands that change the file rewrite it whole (comments are not kept); see
docs/configuration.md.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bluegrass.core import config, enrollment, notify, pinnedhttps
from bluegrass.core.config import Field, Table, TableMap
from bluegrass.core.errors import ConfigError
from bluegrass.core.names import NAME_PATTERN
from bluegrass.laptop import notifications
from bluegrass.laptop.paths import Places

_MINUTES = "a whole number of minutes from 1 to 1440"
_PERCENT = "a whole percentage from 1 to 100"
_BWLIMIT = re.compile(r"(off|\d+(\.\d+)?[BKMGTP]?)?", re.IGNORECASE)
# One pattern per line of the segment's rclone filters file (written as "- PATTERN"): a
# line break would smuggle in a rule of its own.
_PATTERN = re.compile(r"[^\n\r\x00]{1,1000}")


def is_minutes(value: int) -> bool:
    return 1 <= value <= 1440


def is_percent(value: int) -> bool:
    return 1 <= value <= 100


def is_pattern(value: str) -> bool:
    return _PATTERN.fullmatch(value) is not None


def _is_patterns(value: list) -> bool:
    return all(isinstance(v, str) and is_pattern(v) for v in value)


def _is_absolute(value: str) -> bool:
    return Path(value).is_absolute()


_SERVER = Table(
    {
        "host": Field(str, "", "a host name or address", lambda v: 0 < len(v) <= 253),
        "sftp_port": Field(int, 0, "a port number from 1 to 65535", lambda v: 0 < v < 65536),
        "http_port": Field(int, 0, "a port number from 1 to 65535", lambda v: 0 < v < 65536),
        "user": Field(str, "", "a user name", lambda v: re.fullmatch(NAME_PATTERN, v) is not None),
        "device": Field(str, "", "a device id like d1a2b3c4e", lambda v: len(v) > 0),
        "host_key": Field(
            str,
            "",
            'an SSH public key, "ssh-ed25519 AAAA..."',
            lambda v: re.fullmatch(r"ssh-(ed25519|rsa) [A-Za-z0-9+/=]+", v) is not None,
        ),
        "url": Field(
            str,
            "",
            'empty, or the cloud\'s web address such as "https://backup.example.org"',
            lambda v: v == "" or config.is_http_base(v),
            doc="The cloud's web UI when it is not http://host:http_port (a TLS proxy).",
        ),
        "device_port": Field(
            int,
            0,
            "a port number from 1 to 65535, or 0 for none",
            lambda v: 0 <= v < 65536,
            doc="The cloud's HTTPS port for devices (0: enrolled with a code made before it).",
        ),
        "tls_pin": Field(
            str,
            "",
            'empty, or "sha256//" and the base64 of a SHA-256 (44 characters)',
            lambda v: v == "" or pinnedhttps.is_pin(v),
            doc="The key the device port must present; the device password goes nowhere else "
            "over HTTP.",
        ),
    },
    doc="The cloud this laptop is enrolled with (written by `bluegrass enroll`).",
)

_SYNC = Table(
    {
        "interval_minutes": Field(
            int, 15, _MINUTES, is_minutes, doc="How often `bluegrass run` syncs each segment."
        ),
        "max_delete_percent": Field(
            int,
            50,
            _PERCENT,
            is_percent,
            doc="A sync that would delete more than this share of a segment's files stops "
            "and asks you to confirm.",
        ),
        "max_change_percent": Field(
            int,
            50,
            _PERCENT,
            is_percent,
            doc="A sync that would copy this computer's changes over more than this share of "
            "a segment's files on the cloud (ransomware rewrites every file) stops and asks "
            "you to confirm.",
        ),
        "backoff_max_minutes": Field(
            int,
            60,
            _MINUTES,
            is_minutes,
            doc="After failures, retries wait 1, 2, 4, ... minutes, at most this long.",
        ),
        "bandwidth_limit": Field(
            str,
            "",
            'empty, "off", or a rate such as "2M" (bytes per second, rclone --bwlimit)',
            lambda v: _BWLIMIT.fullmatch(v) is not None,
            doc="Limit the transfer rate of syncs; empty means no limit.",
        ),
    },
    doc="How syncs run.",
)

_SEGMENT = Table(
    {
        "path": Field(str, "", "an absolute folder path", _is_absolute),
        "exclude": Field(
            list,
            [],
            "a list of rclone filter patterns (strings, one rule each)",
            _is_patterns,
        ),
        "interval_minutes": Field(int, None, _MINUTES, is_minutes),
        "max_delete_percent": Field(int, None, _PERCENT, is_percent),
        "max_change_percent": Field(int, None, _PERCENT, is_percent),
    }
)

# Empty in files written before these existed, and in codes made before the cloud had them.
OPTIONAL_SERVER_KEYS = ("url", "device_port", "tls_pin")

SCHEMA = Table(
    {
        "server": _SERVER,
        "sync": _SYNC,
        "notify": notifications.SCHEMA,
        "segments": TableMap(
            _SEGMENT,
            key_pattern=NAME_PATTERN,
            key_expected="a segment name: 1-63 characters of a-z, 0-9 and '-'",
            doc="One table per segment (a folder kept in sync), written by `bluegrass segment`.",
        ),
    }
)

HEADER = """Bluegrass laptop client configuration (docs/configuration.md).
`bluegrass enroll` and `bluegrass segment add|remove` rewrite this file; comments are not kept."""


@dataclass(frozen=True)
class Segment:
    name: str
    path: Path
    exclude: tuple[str, ...]
    interval_minutes: int
    max_delete_percent: int
    max_change_percent: int = 50


@dataclass
class Settings:
    places: Places
    values: dict[str, Any]

    @property
    def path(self) -> Path:
        return self.places.config_file

    @property
    def enrolled(self) -> bool:
        return bool(self.values["server"]["host"])

    @property
    def server(self) -> dict[str, Any]:
        return self.values["server"]

    @property
    def http_base(self) -> str:
        s = self.server
        return enrollment.http_base(s["url"], s["host"], s["http_port"])

    @property
    def device_side(self) -> pinnedhttps.DeviceSide | None:
        """The pinned HTTPS side, or None when this laptop was enrolled without a pin."""
        s = self.server
        if not s["tls_pin"] or not s["device_port"]:
            return None
        return pinnedhttps.DeviceSide(s["host"], s["device_port"], s["tls_pin"])

    @property
    def sync(self) -> dict[str, Any]:
        return self.values["sync"]

    @property
    def notify(self) -> dict[str, Any]:
        return self.values["notify"]

    def segments(self) -> dict[str, Segment]:
        found = {}
        for name, body in sorted(self.values["segments"].items()):
            found[name] = Segment(
                name=name,
                path=Path(body["path"]),
                exclude=tuple(body["exclude"]),
                interval_minutes=body["interval_minutes"] or self.sync["interval_minutes"],
                max_delete_percent=body["max_delete_percent"] or self.sync["max_delete_percent"],
                max_change_percent=body["max_change_percent"] or self.sync["max_change_percent"],
            )
        return found

    def save(self) -> None:
        # Notification URLs carry passwords and tokens: then the file is this user's alone.
        write_atomic(self.path, render(self.values), private=_has_urls(self.values))


def load(places: Places) -> Settings:
    cfg = config.load(places.config_file, SCHEMA)
    notify.check(cfg, notifications.ROLE)
    values = cfg.values
    where = str(places.config_file)
    server = {k: v for k, v in values["server"].items() if k not in OPTIONAL_SERVER_KEYS}
    filled = [k for k, v in server.items() if v not in ("", 0)]
    if filled and len(filled) != len(server):
        missing = sorted(k for k, v in server.items() if v in ("", 0))
        raise ConfigError(
            f"{where}: server.{missing[0]}: expected a value (the [server] table is written "
            "whole by `bluegrass enroll`)"
        )
    for name, body in values["segments"].items():
        if not body["path"]:
            raise ConfigError(f"{where}: segments.{name}.path: expected an absolute folder path")
    # Half a device side would be no side at all (Settings.device_side): say so instead.
    port, pin = values["server"]["device_port"], values["server"]["tls_pin"]
    if bool(port) != bool(pin):
        empty, other = ("tls_pin", "device_port") if port else ("device_port", "tls_pin")
        raise ConfigError(
            f"{where}: server.{empty}: expected a value, as server.{other} has one (both come "
            "from the enrollment code; enroll again to restore them)"
        )
    return Settings(places, values)


# -- writing TOML (the few shapes this file has) ---------------------------------------------


def _string(value: str) -> str:
    out = []
    for ch in value:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _table(lines: list[str], header: str, body: Mapping[str, Any]) -> None:
    items = [(k, v) for k, v in body.items() if v is not None]
    if not items:
        return
    lines += ["", f"[{header}]"]
    lines += [f"{k} = {_value(v)}" for k, v in items]


def _has_urls(values: Mapping[str, Any]) -> bool:
    kept = values.get("notify", {})
    return bool(kept.get("urls") or kept.get("targets") or kept.get("ping_url"))


def render(values: Mapping[str, Any]) -> str:
    lines = [f"# {line}" for line in HEADER.splitlines()]
    if values["server"]["host"]:
        _table(lines, "server", values["server"])
    _table(lines, "sync", values["sync"])
    kept = values.get("notify")
    if kept is not None:
        # Only what differs from the defaults, so a file without [notify] stays without it.
        default = config.defaults(SCHEMA).values["notify"]
        scalars = {k: v for k, v in kept.items() if k != "targets" and v != default[k]}
        _table(lines, "notify", scalars)
        for target in kept.get("targets", []):
            lines += ["", "[[notify.targets]]"]
            lines += [f"{k} = {_value(v)}" for k, v in target.items()]
    for name, body in sorted(values["segments"].items()):
        _table(lines, f"segments.{name}", body)
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, text: str, *, private: bool) -> None:
    """Write through a temporary file and rename, so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)
    fd = os.open(tmp, flags, 0o600 if private else 0o644)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if private and os.name == "posix":
        tmp.chmod(0o600)
    tmp.replace(path)
