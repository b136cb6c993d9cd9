"""TLS keys and certificates for test servers, made with the openssl command line, and their
pins computed by openssl too (not by bluegrass.core.pinnedhttps, which they test)."""

from __future__ import annotations

import atexit
import base64
import functools
import shutil
import ssl
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Certificate:
    key: Path
    cert: Path
    pin: str

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context

    def der(self) -> bytes:
        return ssl.PEM_cert_to_DER_cert(self.cert.read_text())


def _openssl() -> str:
    found = shutil.which("openssl")
    assert found is not None, "the openssl command line is needed to make test certificates"
    return found


def openssl_pin(cert: Path) -> str:
    """curl's pinnedPubkey string for `cert`, the way curl's documentation computes it."""
    openssl = _openssl()
    pubkey = subprocess.run(
        [openssl, "x509", "-in", str(cert), "-pubkey", "-noout"],
        capture_output=True,
        check=True,
    ).stdout
    spki = subprocess.run(
        [openssl, "pkey", "-pubin", "-outform", "der"],
        input=pubkey,
        capture_output=True,
        check=True,
    ).stdout
    digest = subprocess.run(
        [openssl, "dgst", "-sha256", "-binary"], input=spki, capture_output=True, check=True
    ).stdout
    return "sha256//" + base64.b64encode(digest).decode()


def make(folder: Path, kind: str = "ec") -> Certificate:
    """A fresh self-signed key pair in `folder`: "ec" (P-256) or "rsa" (2048 bits)."""
    folder.mkdir(parents=True, exist_ok=True)
    key, cert = folder / f"{kind}-key.pem", folder / f"{kind}-cert.pem"
    algorithm = (
        ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
        if kind == "ec"
        else ["-newkey", "rsa:2048"]
    )
    subprocess.run(
        [
            _openssl(),
            "req",
            "-x509",
            *algorithm,
            "-nodes",
            "-days",
            "30",
            "-subj",
            "/CN=other",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        capture_output=True,
        check=True,
    )
    return Certificate(key, cert, openssl_pin(cert))


@functools.cache
def shared() -> Certificate:
    """One key for the process (tests that only need some pinned key, not a fresh one)."""
    folder = Path(tempfile.mkdtemp(prefix="bluegrass-tls-"))
    atexit.register(shutil.rmtree, folder, True)
    return make(folder)
