"""HTTPS to the cloud's device port, authenticated by the key pinned in the enrollment code.

The cloud makes its own self-signed certificate (bluegrass.cloud.tlskey); each enrollment code
carries `tls_pin`, curl's pinnedPubkey form of it: "sha256//" + base64 of the SHA-256 of the
certificate's SubjectPublicKeyInfo (DER). Devices send their password over HTTP only through
`PinnedHTTPSConnection`, which compares the peer's key with the pin right after the TLS
handshake and closes the connection before any byte of the request is written. No CA, host
name or expiry is checked: the pin is the whole check, as the SSH host key is for sftp.

The SPKI is read from the certificate with the small DER reader below, so that the laptop and
the Pi need no `cryptography` (only the cloud makes certificates).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import re
import ssl
from dataclasses import dataclass

from bluegrass.core.errors import BluegrassError

PIN_PREFIX = "sha256//"
_PIN = re.compile(r"sha256//[A-Za-z0-9+/]{43}=")


def is_pin(value: str) -> bool:
    return _PIN.fullmatch(value) is not None


class PinMismatch(BluegrassError):
    """The peer's TLS key is not the pinned one: nothing was sent to it."""


class BadCertificate(BluegrassError):
    """The peer's certificate could not be read (not DER of the X.509 shape)."""


# -- reading the SubjectPublicKeyInfo out of a DER certificate --------------------------------


def _element(der: bytes, at: int) -> tuple[int, int, int]:
    """(tag, start of contents, end of contents) of the DER element at `at`."""
    if at + 2 > len(der):
        raise BadCertificate("truncated DER element")
    tag = der[at]
    if tag & 0x1F == 0x1F:
        raise BadCertificate("multi-byte DER tags are not used in certificates")
    first = der[at + 1]
    at += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        # Indefinite lengths (0x80) are BER, not DER; four bytes cover any certificate.
        if count == 0 or count > 4 or at + count > len(der):
            raise BadCertificate("bad DER length")
        length = int.from_bytes(der[at : at + count], "big")
        at += count
    if at + length > len(der):
        raise BadCertificate("DER element runs past the end")
    return tag, at, at + length


_SEQUENCE = 0x30
_VERSION = 0xA0  # [0] EXPLICIT, context-specific and constructed


def spki_der(certificate: bytes) -> bytes:
    """The SubjectPublicKeyInfo of a DER X.509 certificate, as its whole DER element.

    Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature }
    TBSCertificate ::= SEQUENCE { [0] version OPTIONAL, serialNumber, signature, issuer,
                                  validity, subject, subjectPublicKeyInfo, ... }
    """
    tag, start, end = _element(certificate, 0)
    if tag != _SEQUENCE or end != len(certificate):
        raise BadCertificate("not a DER certificate")
    tag, start, tbs_end = _element(certificate, start)
    if tag != _SEQUENCE:
        raise BadCertificate("no tbsCertificate")
    at = start
    tag, _, after = _element(certificate, at)
    if tag == _VERSION:
        at = after
    # serialNumber, signature, issuer, validity, subject: skipped whole.
    for _ in range(5):
        _, _, at = _element(certificate, at)
        if at > tbs_end:
            raise BadCertificate("tbsCertificate ends early")
    tag, _, spki_end = _element(certificate, at)
    if tag != _SEQUENCE or spki_end > tbs_end:
        raise BadCertificate("no subjectPublicKeyInfo")
    return certificate[at:spki_end]


def pin_of_spki(spki: bytes) -> str:
    return PIN_PREFIX + base64.b64encode(hashlib.sha256(spki).digest()).decode()


def pin_of_certificate(certificate: bytes) -> str:
    """curl's pinnedPubkey string for a DER certificate."""
    return pin_of_spki(spki_der(certificate))


# -- the connection ---------------------------------------------------------------------------


def _context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # A self-signed certificate with no name to check: the pin, compared in connect(), is the
    # whole authentication of the peer.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """An HTTPSConnection that refuses a peer whose key is not `pin`, before sending anything.

    http.client never reads proxies from the environment (urllib does): the connection goes
    to host:port itself.
    """

    def __init__(self, host: str, port: int, pin: str, timeout: float) -> None:
        if not is_pin(pin):
            raise ValueError(f"not a sha256// pin: {pin!r}")
        super().__init__(host, port, timeout=timeout, context=_context())
        self.pin = pin

    def connect(self) -> None:
        super().connect()  # TCP, then the TLS handshake; no request byte is written yet
        assert isinstance(self.sock, ssl.SSLSocket)
        der = self.sock.getpeercert(binary_form=True)
        try:
            found = pin_of_certificate(der) if der else ""
        except BadCertificate:
            found = ""
        if not hmac.compare_digest(found.encode(), self.pin.encode()):
            self.close()
            raise PinMismatch(
                f"the server at {self.host}:{self.port} presented a TLS key other than the one "
                "pinned at enrollment; nothing was sent to it (if the cloud was reinstalled, "
                "enroll again with a new code; otherwise someone may be impersonating it)"
            )


@dataclass(frozen=True)
class DeviceSide:
    """Where a device reaches the cloud's device port, and the key it must find there."""

    host: str
    port: int
    pin: str

    @property
    def base(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


def basic_authorization(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def get(
    side: DeviceSide,
    path: str,
    headers: dict[str, str],
    timeout: float,
    limit: int,
) -> Answer:
    """GET `path` on the device side; at most `limit` bytes of the body are read.

    Raises PinMismatch for another key, OSError (ssl.SSLError, socket errors, timeouts) or
    http.client.HTTPException when no answer came. Any status is an Answer: redirects are
    never followed, since the password is for this peer alone.
    """
    connection = PinnedHTTPSConnection(side.host, side.port, side.pin, timeout)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return Answer(response.status, response.read(limit))
    finally:
        connection.close()
