"""The device port's TLS key and self-signed certificate: DATA/tls_device_key.pem and
DATA/tls_device_cert.pem, made once (like the SSH host key, bluegrass.cloud.hostkey).

Devices authenticate this port by the key alone: every enrollment code carries the pin of its
SubjectPublicKeyInfo (bluegrass.core.pinnedhttps), so no CA, name or expiry matters, and a new
key would lock every enrolled device out of the HTTP side. It is only ever generated when there
is none, under a lock, into a temporary folder first; the key is renamed in before the
certificate, so a certificate is never found without its key.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import os
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bluegrass.core import pinnedhttps
from bluegrass.core.errors import BluegrassError

KEY_NAME = "tls_device_key.pem"
CERT_NAME = "tls_device_cert.pem"
# The pin, not the dates, authenticates the certificate, and nothing checks expiry (the
# devices set CERT_NONE, git sslVerify=false): a far date only spares a tool that looks.
_VALID_DAYS = 100 * 365


@dataclass(frozen=True)
class TLSFiles:
    key: Path
    cert: Path


def paths(data_root: Path) -> TLSFiles:
    return TLSFiles(data_root / KEY_NAME, data_root / CERT_NAME)


def ensure(data_root: Path) -> TLSFiles:
    """The key and certificate, generating them if they do not exist yet (owner-only files)."""
    found = paths(data_root)
    if found.key.is_file() and found.cert.is_file():
        _tighten(found.key)
        _tighten(found.cert)
        return found
    with _locked(data_root / ".tlskey.lock"):
        if found.key.is_file() and found.cert.is_file():
            return found
        key_pem, cert_pem = _generate()
        with tempfile.TemporaryDirectory(dir=data_root, prefix=".tlskey-") as tmp:
            fresh = TLSFiles(Path(tmp) / KEY_NAME, Path(tmp) / CERT_NAME)
            _write_private(fresh.key, key_pem)
            _write_private(fresh.cert, cert_pem)
            fresh.key.replace(found.key)
            fresh.cert.replace(found.cert)
    return found


def pin(data_root: Path) -> str:
    """The certificate's pin, "sha256//…": what enrollment codes carry."""
    cert = ensure(data_root).cert
    try:
        der = ssl.PEM_cert_to_DER_cert(cert.read_text())
        return pinnedhttps.pin_of_certificate(der)
    except (ValueError, pinnedhttps.BadCertificate) as exc:
        raise BluegrassError(
            f"{cert} is damaged ({exc}); restore it from a backup of the data root (a new one "
            "means enrolling every device again)"
        ) from None


def _generate() -> tuple[bytes, bytes]:
    # Only `init` and `run` come here; the import keeps `cryptography` off other commands.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    # P-256: a handshake costs a fraction of RSA-3072's on a small server, and every TLS
    # stack (Python's ssl, git's libcurl with OpenSSL or GnuTLS) speaks it.
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bluegrass device port")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=_VALID_DAYS))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def _tighten(path: Path) -> None:
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        yield
