"""A TLS key and certificate for test servers, made by the cloud's own code (tlskey), once per
test process: the device side's pin is computed from it as a real enrollment code's is."""

from __future__ import annotations

import functools
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bluegrass.cloud import tlskey


@dataclass(frozen=True)
class Certificate:
    key: Path
    cert: Path
    pin: str

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


def make(folder: Path) -> Certificate:
    """A fresh key pair in `folder` (its own: each call there gives another key)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = tlskey.ensure(folder)
    return Certificate(files.key, files.cert, tlskey.pin(folder))


@functools.cache
def shared() -> Certificate:
    """One key for the process (tests that only need the right key, not a fresh one)."""
    return make(Path(tempfile.mkdtemp(prefix="bluegrass-tls-")))
