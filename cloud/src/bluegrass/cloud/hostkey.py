"""The sync endpoint's SSH host key: DATA/ssh_host_ed25519_key (and .pub), made once.

Every enrollment code carries the public half, and clients pin it: a new key would lock out
every enrolled device, so the key is only ever generated when there is none, under a lock,
into a temporary name first, so that an interrupted or concurrent run never leaves a half
key or two different ones.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bluegrass.core.errors import BluegrassError

KEY_NAME = "ssh_host_ed25519_key"


def key_path(data_root: Path) -> Path:
    return data_root / KEY_NAME


def ensure(data_root: Path) -> Path:
    """The private key's path, generating the key pair if it does not exist yet."""
    key = key_path(data_root)
    if key.is_file() and key.with_suffix(".pub").is_file():
        _tighten(key)
        return key
    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        raise BluegrassError(
            "ssh-keygen not found: install OpenSSH's client tools (Debian: openssh-client) "
            "to create the server's host key"
        )
    with _locked(data_root / ".hostkey.lock"):
        if key.is_file() and key.with_suffix(".pub").is_file():
            return key
        with tempfile.TemporaryDirectory(dir=data_root, prefix=".hostkey-") as tmp:
            fresh = Path(tmp) / KEY_NAME
            proc = subprocess.run(
                [keygen, "-q", "-t", "ed25519", "-N", "", "-C", "bluegrass", "-f", str(fresh)],
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
            )
            if proc.returncode != 0:
                raise BluegrassError(f"ssh-keygen failed: {proc.stderr.strip() or proc.returncode}")
            _tighten(fresh)
            # The public half first: a private key is only ever found with its .pub beside it.
            fresh.with_suffix(".pub").replace(key.with_suffix(".pub"))
            fresh.replace(key)
    return key


def public_line(data_root: Path) -> str:
    """'ssh-ed25519 AAAA…' without the comment: what enrollment codes carry."""
    text = ensure(data_root).with_suffix(".pub").read_text()
    parts = text.split()
    if len(parts) < 2:
        raise BluegrassError(f"{key_path(data_root)}.pub is damaged (no key in it)")
    return f"{parts[0]} {parts[1]}"


def _tighten(key: Path) -> None:
    if key.stat().st_mode & 0o077:
        key.chmod(0o600)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        yield
