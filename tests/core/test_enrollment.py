"""The enrollment code: what it carries, codes made before `url`, and damaged fields."""

from __future__ import annotations

import base64
import json
import zlib

import pytest
from bluegrass.core import enrollment
from bluegrass.core.errors import UsageError

FIELDS = {
    "v": 1,
    "server": "backup.example.org",
    "sftp_port": 2022,
    "http_port": 8080,
    "user": "alice",
    "device": "d1a2b3c4d",
    "secret": "s" * 32,
    "host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPlaceholder",
}


def code_of(data: dict[str, object]) -> str:
    raw = zlib.compress(json.dumps(data).encode())
    return enrollment.PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_a_code_made_before_the_public_url_uses_plain_http_on_the_server() -> None:
    found = enrollment.decode(code_of(FIELDS))
    assert found.url == ""
    assert found.http_base == "http://backup.example.org:8080"


def test_the_public_url_survives_the_round_trip() -> None:
    made = enrollment.decode(code_of({**FIELDS, "url": "https://backup.example.org/"}))
    again = enrollment.decode(made.encode())
    assert again == made
    assert again.http_base == "https://backup.example.org"


@pytest.mark.parametrize(
    "url",
    ["backup.example.org", "https://backup.example.org/git", "file:///srv", "https://u:p@host", 7],
)
def test_a_bad_public_url_is_refused(url: object) -> None:
    with pytest.raises(UsageError, match="bad 'url' field"):
        enrollment.decode(code_of({**FIELDS, "url": url}))


PIN = "sha256//" + "q" * 43 + "="


def test_a_code_made_before_the_device_port_has_no_device_side() -> None:
    # Such a device sends its password over HTTP nowhere (decision 115).
    found = enrollment.decode(code_of(FIELDS))
    assert (found.device_port, found.tls_pin, found.device_side) == (0, "", None)


def test_the_device_port_and_its_pin_survive_the_round_trip() -> None:
    made = enrollment.decode(code_of({**FIELDS, "device_port": 8443, "tls_pin": PIN}))
    assert enrollment.decode(made.encode()) == made
    side = made.device_side
    assert side is not None
    assert (side.base, side.pin) == ("https://backup.example.org:8443", PIN)


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        ({"device_port": 8443}, "tls_pin"),
        ({"tls_pin": PIN}, "tls_pin"),
        ({"device_port": 8443, "tls_pin": "sha256//short="}, "tls_pin"),
        ({"device_port": 8443, "tls_pin": PIN.replace("sha256", "sha1")}, "tls_pin"),
        ({"device_port": 70000, "tls_pin": PIN}, "device_port"),
        ({"device_port": "8443", "tls_pin": PIN}, "device_port"),
    ],
)
def test_a_bad_device_side_is_refused(fields: dict[str, object], key: str) -> None:
    with pytest.raises(UsageError, match=f"bad '{key}' field"):
        enrollment.decode(code_of({**FIELDS, **fields}))
