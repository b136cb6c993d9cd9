"""The server's own state, as uploaded under the administrator's secret and put back by a
rebuild: what lets every enrolled device reconnect without being enrolled again.

bluegrass.db           a consistent copy made with SQLite's backup API (the live file may be
                       mid-transaction, with a WAL beside it)
ssh_host_ed25519_key   the sync endpoint's host key (and .pub): devices pin it
web-session.key        the web interface's session signing key
tls_device_*.pem       the device port's TLS key and certificate, where the server has them
                       (devices pin that key as they pin the host key)
replica-keys.json      every user's replica secrets (so the administrator's secret opens all)
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

from bluegrass.cloud import database, hostkey
from bluegrass.cloud.replica import keys
from bluegrass.core.errors import BluegrassError

DATABASE = database.FILENAME
HOST_KEY = hostkey.KEY_NAME
HOST_KEY_PUB = hostkey.KEY_NAME + ".pub"
# bluegrass.cloud.panelbackend.SESSION_KEY_FILE, named here so that the scheduler's import of
# this module does not pull in Flask.
WEB_KEY = "web-session.key"
# bluegrass.cloud.tlskey's KEY_NAME and CERT_NAME, named here for the same reason; a server
# without them simply has none to copy.
TLS_KEY = "tls_device_key.pem"
TLS_CERT = "tls_device_cert.pem"
USER_KEYS = "replica-keys.json"
# Copied as they are; all go back owner-only but the public halves.
PRIVATE = (HOST_KEY, WEB_KEY, TLS_KEY)
PUBLIC = (HOST_KEY_PUB, TLS_CERT)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def collect(data_root: Path, dest: Path) -> list[str]:
    """Write the state files into `dest` (owner-only); return their names."""
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    written = []
    db = data_root / DATABASE
    if db.is_file():
        copy = dest / DATABASE
        copy.unlink(missing_ok=True)
        _write_private(copy, b"")
        try:
            source = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
            try:
                target = sqlite3.connect(copy)
                with target:
                    source.backup(target)
                target.close()
            finally:
                source.close()
        except sqlite3.Error as exc:
            raise BluegrassError(f"{db}: cannot copy the accounts database: {exc}") from exc
        written.append(DATABASE)
    for name in (*PRIVATE, *PUBLIC):
        path = data_root / name
        if path.is_file():
            _write_private(dest / name, path.read_bytes())
            written.append(name)
    texts = keys.all_user_secrets(data_root)
    _write_private(dest / USER_KEYS, json.dumps(texts, sort_keys=True).encode())
    written.append(USER_KEYS)
    return written


def install(source: Path, data_root: Path) -> list[str]:
    """Put the downloaded state files back into a (new) data root; return the users whose
    secrets came back."""
    for name in (DATABASE, *PRIVATE):
        if (source / name).is_file():
            _write_private(data_root / name, (source / name).read_bytes())
    for name in PUBLIC:
        if (source / name).is_file():
            (data_root / name).write_bytes((source / name).read_bytes())
    texts: dict[str, str] = {}
    if (source / USER_KEYS).is_file():
        texts = json.loads((source / USER_KEYS).read_text(encoding="utf-8"))
    keys.install_user_secrets(data_root, texts)
    return sorted(texts)


def users_in_database(db: Path) -> list[str]:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            check = conn.execute("PRAGMA integrity_check").fetchone()[0]
            if check != "ok":
                raise BluegrassError(f"{db}: the replicated database is damaged: {check}")
            return sorted(row[0] for row in conn.execute("SELECT name FROM users"))
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise BluegrassError(f"{db}: the replicated database cannot be read: {exc}") from exc
