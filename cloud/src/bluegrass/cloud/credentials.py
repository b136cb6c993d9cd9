"""Users, their devices, the devices' secrets and SSH keys, in DATA/bluegrass.db.

A device's secret is never stored: only its argon2id hash. The secret is a 256-bit random
token, so the hash parameters guard against a leaked database being useful at all rather
than against guessing; they are chosen to keep a login cheap on a small server (19 MiB, 2
passes: OWASP's baseline for argon2id) and live in each hash, so they can change later.
Web passwords are chosen by people, so they are kept apart, in the panel's own tables
(bluegrass.panel.accounts).

Every change that can end a login (a revoked device, a removed user) bumps the credentials
revision, which lets `run` notice it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import sqlite3
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from bluegrass.cloud.database import Database, now_text
from bluegrass.core import names
from bluegrass.core.errors import UsageError

KEY_TYPES = frozenset(
    {
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)
MAX_DEVICE_NAME = 64

_HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)


# Verified when the user or device is unknown, so that a refusal takes as long either way and
# the time of an answer does not tell which devices exist. A constant with _HASHER's
# parameters: hashing one afresh would itself cost a hash in each (one-shot) proxy process.
_DUMMY_HASH = (
    "$argon2id$v=19$m=19456,t=2,p=1$jDt6zOFkJ9zzm/osI5QtGA$"
    "DmpqgZO5eARIqRzXBIz3P3rTiEwciLQ4O1ki/BLVhM8"
)


# Why a login of a revoked device with its real secret is refused (checked, never counted).
REVOKED = "device revoked"


@dataclass(frozen=True)
class PublicKey:
    """One SSH public key, as in an authorized_keys line: type, base64 blob, comment."""

    type: str
    blob: str
    comment: str = ""

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256(base64.b64decode(self.blob)).digest()
        return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")

    def to_json(self) -> dict[str, str]:
        return {"type": self.type, "fingerprint": self.fingerprint, "comment": self.comment}


def parse_public_keys(text: str, source: str) -> list[PublicKey]:
    """The keys of a .pub or authorized_keys file; anything else is refused, line by line."""
    keys = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 2)
        where = f"{source}, line {number}"
        if parts[0] not in KEY_TYPES:
            raise UsageError(
                f"{where}: not an SSH public key of a supported type ({parts[0][:40]!r}; "
                "options before the key are not supported)"
            )
        if len(parts) < 2:
            raise UsageError(f"{where}: the key data is missing")
        try:
            raw = base64.b64decode(parts[1], validate=True)
            (length,) = struct.unpack(">I", raw[:4])
            inner = raw[4 : 4 + length].decode("ascii")
        except (binascii.Error, struct.error, UnicodeDecodeError):
            raise UsageError(f"{where}: the key data is not valid") from None
        if inner != parts[0]:
            raise UsageError(f"{where}: the key data is a {inner[:40]!r} key, not {parts[0]!r}")
        keys.append(PublicKey(parts[0], parts[1], parts[2].strip() if len(parts) > 2 else ""))
    if not keys:
        raise UsageError(f"{source}: no SSH public key in it")
    return keys


def check_device_name(name: str) -> str:
    if not 0 < len(name) <= MAX_DEVICE_NAME or not name.isprintable() or name != name.strip():
        raise UsageError(
            f"invalid device name {name!r}: expected 1-{MAX_DEVICE_NAME} printable characters, "
            "no leading or trailing spaces"
        )
    return name


@dataclass
class Device:
    id: str
    user: str
    name: str
    created: str
    revoked: str | None
    keys: list[PublicKey] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "user": self.user,
            "device": self.id,
            "name": self.name,
            "created": self.created,
            "revoked": self.revoked,
            "keys": [k.to_json() for k in self.keys],
        }


@dataclass(frozen=True)
class StoredUsage:
    """A user's measured use, as remembered in the database (bluegrass.cloud.quota)."""

    files: int  # bytes in DATA/files/<user>/
    history: int  # bytes in DATA/repos/<user>/
    measured: float  # when, in seconds since the epoch
    restricted: int  # how the sync endpoint was last told to serve them (quota.OPEN, …)
    floor: int | None = None  # the fewest `files` bytes seen since restricted


@dataclass(frozen=True)
class NewDevice:
    device: Device
    secret: str  # shown once, in the enrollment code; never stored


class Credentials(Database):
    """Users and devices: who may sync, with which secret or key."""

    # -- users ------------------------------------------------------------------------------

    def users(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT name FROM users ORDER BY name")]

    def has_user(self, user: str) -> bool:
        return self.db.execute("SELECT 1 FROM users WHERE name = ?", (user,)).fetchone() is not None

    def add_user(self, user: str) -> None:
        """Inside a transaction. An existing row (a user made before accounts) is kept."""
        names.check("user", user)
        self.db.execute(
            "INSERT OR IGNORE INTO users (name, created) VALUES (?, ?)", (user, now_text())
        )

    def remove_user(self, user: str) -> int:
        """Delete the user's rows (devices and keys cascade); returns how many devices."""
        with self.transaction() as db:
            count = db.execute("SELECT count(*) FROM devices WHERE user = ?", (user,)).fetchone()
            db.execute("DELETE FROM users WHERE name = ?", (user,))
            self._bump_revision()
        return int(count[0])

    # -- devices ----------------------------------------------------------------------------

    def new_device(self, user: str, name: str) -> NewDevice:
        """Inside a transaction: a device with a fresh id and secret for an existing user."""
        check_device_name(name)
        self.add_user(user)
        secret = secrets.token_urlsafe(32)
        created = now_text()
        while True:
            device_id = "d" + secrets.token_hex(4)
            try:
                self.db.execute(
                    "INSERT INTO devices VALUES (?, ?, ?, ?, ?, NULL)",
                    (device_id, user, name, _HASHER.hash(secret), created),
                )
                break
            except sqlite3.IntegrityError:
                continue  # an id already taken (1 in 4 billion): draw another
        return NewDevice(Device(device_id, user, name, created, None), secret)

    def devices(self, user: str | None = None) -> list[Device]:
        query = "SELECT id, user, name, created, revoked FROM devices"
        params: tuple[str, ...] = ()
        if user is not None:
            query += " WHERE user = ?"
            params = (user,)
        found = [Device(*row) for row in self.db.execute(query + " ORDER BY user, rowid", params)]
        for device in found:
            device.keys = [
                PublicKey(*row)
                for row in self.db.execute(
                    "SELECT type, blob, comment FROM device_keys WHERE device = ? ORDER BY added",
                    (device.id,),
                )
            ]
        return found

    def device(self, user: str, device_id: str) -> Device:
        for device in self.devices(user):
            if device.id == device_id:
                return device
        raise UsageError(f"user {user!r} has no device {device_id!r} (see: device list {user})")

    def revoke(self, user: str, device_id: str) -> tuple[Device, bool]:
        """Revoke a device; (device, whether it was revoked just now)."""
        with self.transaction() as db:
            device = self.device(user, device_id)
            if device.revoked:
                return device, False
            device.revoked = now_text()
            db.execute("UPDATE devices SET revoked = ? WHERE id = ?", (device.revoked, device.id))
            self._bump_revision()
        return device, True

    def add_keys(self, user: str, device_id: str, keys: list[PublicKey]) -> list[PublicKey]:
        """Register keys for a device; returns those that were new."""
        with self.transaction() as db:
            device = self.device(user, device_id)
            if device.revoked:
                raise UsageError(f"device {device_id} of {user!r} is revoked; add another device")
            known = {k.blob for k in device.keys}
            added = [k for k in keys if k.blob not in known]
            for key in added:
                known.add(key.blob)
                db.execute(
                    "INSERT INTO device_keys VALUES (?, ?, ?, ?, ?)",
                    (device.id, key.type, key.blob, key.comment, now_text()),
                )
        return added

    # -- logins -----------------------------------------------------------------------------

    def check_secret(
        self,
        user: str,
        device_id: str,
        secret: str,
        run: Callable[[Callable[[], bool]], bool] | None = None,
    ) -> str | None:
        """None when `secret` opens this user's device, else why not (for the auth log).
        `run` runs the argon2 verification (the login checker's bounded pool), else here."""
        row = self.db.execute(
            "SELECT secret_hash, revoked FROM devices WHERE id = ? AND user = ?",
            (device_id, user),
        ).fetchone()
        stored = row[0] if row else _DUMMY_HASH

        def verify() -> bool:
            try:
                return bool(_HASHER.verify(stored, secret))
            except (VerificationError, InvalidHashError):
                return False

        ok = run(verify) if run is not None else verify()
        if row is None:
            return "unknown device for this user"
        if row[1] is not None:
            # Only the holder of the real secret is told: a guess at a revoked device is a
            # wrong secret like any other, counted towards a lock-out; the holder's retries
            # are not, so a revoked laptop never locks its own address out (decision 135).
            return REVOKED if ok else "wrong secret"
        return None if ok else "wrong secret"

    def is_live_device(self, user: str, device_id: str) -> bool:
        """Whether `device_id` is a device of `user` and not revoked (no secret checked)."""
        row = self.db.execute(
            "SELECT 1 FROM devices WHERE id = ? AND user = ? AND revoked IS NULL",
            (device_id, user),
        ).fetchone()
        return row is not None

    def check_key(self, user: str, blob: str) -> tuple[str | None, str | None]:
        """(device id, None) when `blob` is a key of a live device of `user`, else (None, why)."""
        try:
            raw = base64.b64decode(blob, validate=True)
        except binascii.Error:
            return None, "malformed public key"
        rows = self.db.execute(
            "SELECT d.id, d.revoked, k.blob FROM device_keys k JOIN devices d ON d.id = k.device "
            "WHERE d.user = ?",
            (user,),
        ).fetchall()
        revoked = False
        for device_id, revoked_at, stored in rows:
            if base64.b64decode(stored) == raw:
                if revoked_at is None:
                    return device_id, None
                revoked = True
        return None, "key of a revoked device" if revoked else "key not registered"

    # -- quotas (bluegrass.cloud.quota decides; these only read and write) -----------------

    def quota(self, user: str) -> int | None:
        row = self.db.execute("SELECT quota FROM users WHERE name = ?", (user,)).fetchone()
        return None if row is None else row[0]

    def quotas(self) -> dict[str, int | None]:
        return dict(self.db.execute("SELECT name, quota FROM users ORDER BY name").fetchall())

    def set_quota(self, user: str, quota: int | None) -> None:
        """Inside a transaction. Bumps the credentials revision: `run` restarts the sync
        endpoint, so no login cached under the old quota outlives the change."""
        self.db.execute("UPDATE users SET quota = ? WHERE name = ?", (quota, user))
        self._bump_revision()

    def stored_usage(self, user: str) -> StoredUsage | None:
        row = self.db.execute(
            "SELECT files, history, measured, restricted, floor FROM usage WHERE user = ?",
            (user,),
        ).fetchone()
        return None if row is None else StoredUsage(*row)

    def store_usage(self, user: str, usage: StoredUsage, *, restart: bool = False) -> None:
        """Remember `usage`; with `restart`, also bump the credentials revision, so that `run`
        restarts the sync endpoint and every login cached with the old restriction goes."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO usage VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(user) DO UPDATE SET "
                "files = excluded.files, history = excluded.history, "
                "measured = excluded.measured, restricted = excluded.restricted, "
                "floor = excluded.floor",
                (user, usage.files, usage.history, usage.measured, usage.restricted, usage.floor),
            )
            if restart:
                self._bump_revision()

    # -- revision: lets `run` notice revocations ------------------------------------------

    def _bump_revision(self) -> None:
        self.db.execute(
            "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'credentials_revision'"
        )

    def credentials_revision(self) -> int:
        row = self.db.execute(
            "SELECT value FROM meta WHERE key = 'credentials_revision'"
        ).fetchone()
        return int(row[0])
