"""bluegrass.core.pinnedhttps: the pin of a certificate as curl computes it, and a connection
that writes nothing to a peer with another key.

Certificates and their pins come from the openssl command line (tests.support.tls), not from
the module under test; the peer is a real TLS server on loopback that records what it gets.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from bluegrass.core import pinnedhttps

from tests.support import tls


@pytest.mark.parametrize("kind", ["ec", "rsa"])
def test_the_pin_of_a_certificate_is_curls(tmp_path: Path, kind: str) -> None:
    cert = tls.make(tmp_path, kind)
    assert pinnedhttps.pin_of_certificate(cert.der()) == cert.pin
    assert pinnedhttps.is_pin(cert.pin)


@pytest.mark.parametrize(
    "damaged",
    [b"", b"\x30", b"\x30\x03\x02\x01\x01", b"\x30\x84\xff\xff\xff\xff", b"not a certificate"],
)
def test_a_damaged_certificate_is_refused(damaged: bytes) -> None:
    with pytest.raises(pinnedhttps.BadCertificate):
        pinnedhttps.spki_der(damaged)


def test_a_truncated_certificate_is_refused(tmp_path: Path) -> None:
    der = tls.make(tmp_path).der()
    for cut in (len(der) // 4, len(der) // 2, len(der) - 1):
        with pytest.raises(pinnedhttps.BadCertificate):
            pinnedhttps.spki_der(der[:cut])


@pytest.mark.parametrize(
    "value",
    ["", "sha256//", "sha256//" + "A" * 44, "sha1//" + "A" * 43 + "=", "A" * 43 + "="],
)
def test_what_is_not_a_pin(value: str) -> None:
    assert not pinnedhttps.is_pin(value)


class Peer:
    """A TLS server that answers one request per connection with 200 and records each
    connection's bytes (after the handshake)."""

    def __init__(self, cert: tls.Certificate) -> None:
        self.context = cert.server_context()
        self.pin = cert.pin
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.received: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return  # closed
            data, recorded = b"", False
            try:
                with self.context.wrap_socket(raw, server_side=True) as conn:
                    conn.settimeout(10)
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    # Recorded before answering: the client reads nothing until it is.
                    self.received.append(data)
                    recorded = True
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            except (OSError, ssl.SSLError):
                # The client hung up (as a refused pin makes it): what came is recorded all
                # the same, before the next connection is taken.
                if not recorded:
                    self.received.append(data)


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[Peer]:
    found = Peer(tls.make(tmp_path / "peer"))
    try:
        yield found
    finally:
        found.listener.close()


def test_the_pinned_key_is_served(peer: Peer) -> None:
    side = pinnedhttps.DeviceSide("127.0.0.1", peer.port, peer.pin)
    answer = pinnedhttps.get(side, "/x", {"Authorization": "Basic c2VjcmV0"}, 10, limit=100)
    assert (answer.status, answer.body) == (200, b"ok")
    assert b"Authorization: Basic c2VjcmV0" in peer.received[0]


def test_another_key_gets_not_one_byte(peer: Peer, tmp_path: Path) -> None:
    other = pinnedhttps.DeviceSide("127.0.0.1", peer.port, tls.make(tmp_path / "other").pin)
    with pytest.raises(pinnedhttps.PinMismatch, match="nothing was sent"):
        pinnedhttps.get(other, "/x", {"Authorization": "Basic c2VjcmV0"}, 10, limit=100)
    # The server takes one connection at a time: once the next one is answered, the first
    # has been recorded, and it held no request at all.
    right = pinnedhttps.DeviceSide("127.0.0.1", peer.port, peer.pin)
    pinnedhttps.get(right, "/after", {}, 10, limit=100)
    assert len(peer.received) == 2, peer.received
    assert peer.received[0] == b""
    assert peer.received[1].startswith(b"GET /after ")


def test_the_side_base_brackets_ipv6() -> None:
    pin = "sha256//" + "A" * 43 + "="
    assert pinnedhttps.DeviceSide("::1", 8443, pin).base == "https://[::1]:8443"
    assert pinnedhttps.DeviceSide("cloud.example", 8443, pin).base == "https://cloud.example:8443"
