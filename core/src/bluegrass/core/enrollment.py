"""The enrollment code: one pasteable line that sets up a laptop or a Pi.

    bg1-<base64url of zlib-compressed JSON, no padding>

The JSON (all keys required but `url`, `device_port` and `tls_pin`):

    {"v": 1,
     "server": "backup.example.org",      host name or address of the cloud
     "sftp_port": 2022,                   the sync endpoint (rclone serve sftp)
     "http_port": 8080,                   the web UI for people (plain http, or behind `url`)
     "device_port": 8443,                 the device side: the same HTTP routes over TLS with
                                          the cloud's own key; 0 in codes made before it
     "tls_pin": "sha256//…",              that key, pinned: base64 of the SHA-256 of its
                                          SubjectPublicKeyInfo (curl's pinnedPubkey form);
                                          "" in codes made before it
     "user": "alice",
     "device": "d1a2b3c4e",               this device's id: revocable on its own
     "secret": "…",                       this device's secret (stored hashed on the server)
     "host_key": "ssh-ed25519 AAAA…",     the server's SSH host key, pinned by the client
     "url": "https://backup.example.org"} the web UI's public address (a TLS proxy in front
                                          of http_port), or "" for http://server:http_port

The device logs in to the sync endpoint as `user` with the password `device.secret`
(see `password`), checking `host_key`; it sends the same password over HTTP only to
https://server:device_port after checking `tls_pin` (bluegrass.core.pinnedhttps), never to
`url` or `http_port`. A code without a pin gives no HTTP side at all (`device_side` is None).
The code is a credential: whoever has it can read and write the user's files.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import zlib
from dataclasses import asdict, dataclass

from bluegrass.core import config, names, pinnedhttps
from bluegrass.core.errors import UsageError

PREFIX = "bg1-"
_DEVICE = re.compile(r"d[0-9a-f]{8}")
_SECRET = re.compile(r"[A-Za-z0-9_-]{20,100}")
_HOST_KEY = re.compile(r"ssh-(ed25519|rsa) [A-Za-z0-9+/=]+")


@dataclass(frozen=True)
class Enrollment:
    server: str
    sftp_port: int
    http_port: int
    user: str
    device: str
    secret: str
    host_key: str
    url: str = ""
    device_port: int = 0
    tls_pin: str = ""
    v: int = 1

    @property
    def http_base(self) -> str:
        return http_base(self.url, self.server, self.http_port)

    @property
    def device_side(self) -> pinnedhttps.DeviceSide | None:
        """Where this device may send its password over HTTP, or None (a code made before
        the cloud had a device port: then it never does)."""
        if not self.tls_pin or not self.device_port:
            return None
        return pinnedhttps.DeviceSide(self.server, self.device_port, self.tls_pin)

    @property
    def password(self) -> str:
        """What the device presents to the sync endpoint and to git over HTTP."""
        return f"{self.device}.{self.secret}"

    def encode(self) -> str:
        raw = json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()
        return PREFIX + base64.urlsafe_b64encode(zlib.compress(raw, 9)).decode().rstrip("=")


def decode(code: str) -> Enrollment:
    """Parse and check a pasted code; any damage gives one clear error."""
    code = code.strip()
    if not code.startswith(PREFIX):
        raise UsageError(f"not a Bluegrass enrollment code (it should start with {PREFIX!r})")
    body = code[len(PREFIX) :]
    try:
        raw = zlib.decompress(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        data = json.loads(raw)
    except (binascii.Error, zlib.error, ValueError) as exc:
        raise UsageError("the enrollment code is damaged (was it copied whole?)") from exc
    if not isinstance(data, dict) or data.get("v") != 1:
        raise UsageError("unsupported enrollment code version (update Bluegrass)")
    try:
        found = Enrollment(**data)
    except TypeError as exc:
        raise UsageError("the enrollment code is damaged (missing or extra fields)") from exc
    checks = [
        (isinstance(found.server, str) and 0 < len(found.server) <= 253, "server"),
        (isinstance(found.sftp_port, int) and 0 < found.sftp_port < 65536, "sftp_port"),
        (isinstance(found.http_port, int) and 0 < found.http_port < 65536, "http_port"),
        (isinstance(found.user, str) and names.is_valid(found.user), "user"),
        (isinstance(found.device, str) and _DEVICE.fullmatch(found.device) is not None, "device"),
        (isinstance(found.secret, str) and _SECRET.fullmatch(found.secret) is not None, "secret"),
        (
            isinstance(found.host_key, str) and _HOST_KEY.fullmatch(found.host_key) is not None,
            "host_key",
        ),
        (isinstance(found.url, str) and (found.url == "" or config.is_http_base(found.url)), "url"),
        (
            isinstance(found.device_port, int) and 0 <= found.device_port < 65536,
            "device_port",
        ),
        (
            isinstance(found.tls_pin, str)
            and (found.tls_pin == "" or pinnedhttps.is_pin(found.tls_pin)),
            "tls_pin",
        ),
        (bool(found.tls_pin) == bool(found.device_port), "tls_pin"),
    ]
    for ok, key in checks:
        if not ok:
            raise UsageError(f"the enrollment code has a bad {key!r} field")
    return found


def http_base(url: str, server: str, http_port: int) -> str:
    """Where people reach the web UI: the public URL if the cloud set one, else plain http on
    the server's address. Never where a device sends its password (`device_side`)."""
    return url.rstrip("/") or f"http://{server}:{http_port}"


def split_password(password: str) -> tuple[str, str] | None:
    """(device, secret) from a presented password, or None if it is not of that shape."""
    device, sep, secret = password.partition(".")
    if not sep or not _DEVICE.fullmatch(device) or not _SECRET.fullmatch(secret):
        return None
    return device, secret
