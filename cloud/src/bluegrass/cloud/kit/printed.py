"""Which kit each user last printed: enough to tell them when it has gone out of date.

DATA/replica/kits/<user>.json  {"fingerprint", "printed"}: the fingerprint of the secrets the
                               last kit made for that user carried, and when (UTC). Written
                               whole (temporary name, then rename), owner-only.

Only a fingerprint is kept, never the kit: a printed kit is out of date exactly when the
fingerprint of what a new kit would print differs. A rebuilt server has no record, so its
users are asked to print a kit, which is right: the rebuild is when a person checks.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bluegrass.cloud.replica import keys
from bluegrass.core import names


@dataclass(frozen=True)
class Printed:
    fingerprint: str
    at: datetime


def _path(data_root: Path, user: str) -> Path:
    names.check("user", user)
    return keys.folder(data_root) / "kits" / f"{user}.json"


def read(data_root: Path, user: str) -> Printed | None:
    """The user's last printed kit, or None if none was made (or the record is unreadable:
    the person is then asked to print one, which is never wrong)."""
    try:
        data = json.loads(_path(data_root, user).read_text(encoding="utf-8"))
        return Printed(str(data["fingerprint"]), datetime.fromisoformat(data["printed"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def record(data_root: Path, user: str, fingerprint: str, at: datetime | None = None) -> None:
    """Remember that a kit with these secrets was made for `user` now (or at `at`)."""
    path = _path(data_root, user)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    when = (at or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds")
    body = json.dumps({"fingerprint": fingerprint, "printed": when}).encode("utf-8")
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        os.write(fd, body)
        os.fsync(fd)
    finally:
        os.close(fd)
    temp.replace(path)
