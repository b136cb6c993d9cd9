"""Users, their devices and credentials, login failures and job history: DATA/bluegrass.db.

Also the web interface's accounts (a password, an admin flag and a session epoch per user),
its own sign-in failures and its background jobs (bluegrass.cloud.panelbackend).

This module owns the SQLite schema. The schema version is SQLite's `user_version`; each entry
of MIGRATIONS brings a database from version i to i + 1, inside one transaction, so a new
version only appends a migration. A database written by a newer Bluegrass is refused.

A device's secret is never stored: only its argon2id hash. The secret is a 256-bit random
token, so the hash parameters guard against a leaked database being useful at all rather
than against guessing; they are chosen to keep a login cheap on a small server (19 MiB, 2
passes: OWASP's baseline for argon2id) and live in each hash, so they can change later.

Web passwords are chosen by people, so they are kept apart from device secrets, in the
panel's own tables (bluegrass.panel.accounts: its hasher, its rules), which migration 2 made
and migration 3 gave the panel's column names.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import secrets
import sqlite3
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from bluegrass.core import diskspace, names, sqlschema
from bluegrass.core.errors import BluegrassError, UsageError
from bluegrass.panel.accounts import Account, WebAccounts

FILENAME = "bluegrass.db"

MIGRATIONS: list[list[str]] = [
    # 1: users, devices, device keys, login failures (rate limiting), job history, meta.
    [
        "CREATE TABLE users (name TEXT PRIMARY KEY, created TEXT NOT NULL)",
        """CREATE TABLE devices (
            id TEXT PRIMARY KEY,
            user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
            name TEXT NOT NULL,
            secret_hash TEXT NOT NULL,
            created TEXT NOT NULL,
            revoked TEXT
        )""",
        "CREATE INDEX devices_by_user ON devices(user)",
        """CREATE TABLE device_keys (
            device TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
            type TEXT NOT NULL,
            blob TEXT NOT NULL,
            comment TEXT NOT NULL,
            added TEXT NOT NULL,
            PRIMARY KEY (device, blob)
        )""",
        """CREATE TABLE login_failures (
            at REAL NOT NULL,
            user TEXT NOT NULL,
            client_ip TEXT NOT NULL,
            reason TEXT NOT NULL
        )""",
        "CREATE INDEX login_failures_by_time ON login_failures(at)",
        """CREATE TABLE jobs (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            user TEXT NOT NULL,
            segment TEXT NOT NULL,
            scheduled_for TEXT,
            started TEXT NOT NULL,
            finished TEXT NOT NULL,
            outcome TEXT NOT NULL,
            detail TEXT NOT NULL
        )""",
        "CREATE INDEX jobs_by_segment ON jobs(kind, user, segment, scheduled_for)",
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "INSERT INTO meta VALUES ('credentials_revision', '0')",
    ],
    # 2: the web interface: accounts (one per user, never a device's secret), its sign-in
    # failures (kept apart from the sync endpoint's, so that guessing a web password does not
    # stop a user's laptops from syncing) and its background jobs (state shared by workers).
    [
        """CREATE TABLE web_accounts (
            user TEXT PRIMARY KEY REFERENCES users(name) ON DELETE CASCADE,
            password_hash TEXT NOT NULL,
            admin INTEGER NOT NULL DEFAULT 0,
            session_epoch TEXT NOT NULL,
            created TEXT NOT NULL,
            password_changed TEXT NOT NULL
        )""",
        """CREATE TABLE web_login_failures (
            at REAL NOT NULL,
            name TEXT NOT NULL,
            client_ip TEXT NOT NULL
        )""",
        "CREATE INDEX web_login_failures_by_time ON web_login_failures(at)",
        """CREATE TABLE web_jobs (
            id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            kind TEXT NOT NULL,
            label TEXT NOT NULL,
            user TEXT NOT NULL,
            segment TEXT NOT NULL,
            state TEXT NOT NULL,
            progress REAL,
            message TEXT NOT NULL,
            started REAL NOT NULL,
            finished REAL
        )""",
        "CREATE INDEX web_jobs_by_owner ON web_jobs(owner, started)",
        "CREATE INDEX web_jobs_by_segment ON web_jobs(user, segment, state)",
    ],
    # 3: the web sign-ins take the column names of the panel's one store
    # (bluegrass.panel.accounts), shared with the Pi and the reference backend. Rows are kept:
    # a password set before still signs in. `password_changed` was written, never read.
    [
        "ALTER TABLE web_accounts RENAME COLUMN user TO name",
        "ALTER TABLE web_accounts RENAME COLUMN password_hash TO hash",
        "ALTER TABLE web_accounts RENAME COLUMN session_epoch TO epoch",
        "ALTER TABLE web_accounts DROP COLUMN password_changed",
        "ALTER TABLE web_login_failures RENAME COLUMN client_ip TO ip",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)

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


class AccountsError(BluegrassError):
    pass


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


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
class NewDevice:
    device: Device
    secret: str  # shown once, in the enrollment code; never stored


@dataclass(frozen=True)
class WebJob:
    id: str
    owner: str
    kind: str
    label: str
    user: str
    segment: str
    state: str  # queued, running, done, failed
    progress: float | None
    message: str
    started: float
    finished: float | None

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")


@dataclass(frozen=True)
class Job:
    kind: str
    user: str
    segment: str
    scheduled_for: str | None
    started: str
    finished: str
    outcome: str
    detail: str


class Accounts:
    """One connection to DATA/bluegrass.db. Use as a context manager; writes are atomic."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.exists():
            # Hashes only, but still nobody else's business.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        try:
            self.db = sqlite3.connect(path, isolation_level=None, timeout=10)
            self.db.execute("PRAGMA foreign_keys = ON")
            # Several processes use the database at once (each login runs the auth proxy).
            self.db.execute("PRAGMA journal_mode = WAL")
            self._migrate()
        except sqlite3.Error as exc:
            if diskspace.mentions_full(str(exc)) or diskspace.is_nearly_full(path):
                # SQLite says "disk I/O error" when it cannot even map its WAL index.
                doing = f"opening the accounts database {path} (SQLite: {exc})"
                raise AccountsError(diskspace.no_space(path, doing)) from exc
            raise AccountsError(f"{path}: cannot use the accounts database: {exc}") from exc

    @classmethod
    def open(cls, data_root: Path) -> Accounts:
        return cls(data_root / FILENAME)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Accounts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All of it or none of it; IMMEDIATE so that two writers queue instead of failing."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _migrate(self) -> None:
        sqlschema.migrate(self.db, MIGRATIONS, str(self.path), AccountsError)

    # -- users ------------------------------------------------------------------------------

    def users(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT name FROM users ORDER BY name")]

    def has_user(self, user: str) -> bool:
        return self.db.execute("SELECT 1 FROM users WHERE name = ?", (user,)).fetchone() is not None

    def add_user(self, user: str) -> None:
        """Inside a transaction. An existing row (a user made before accounts) is kept."""
        names.check("user", user)
        self.db.execute("INSERT OR IGNORE INTO users VALUES (?, ?)", (user, now_text()))

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

    def check_secret(self, user: str, device_id: str, secret: str) -> str | None:
        """None when `secret` opens this user's device, else why not (for the auth log)."""
        row = self.db.execute(
            "SELECT secret_hash, revoked FROM devices WHERE id = ? AND user = ?",
            (device_id, user),
        ).fetchone()
        stored = row[0] if row else _DUMMY_HASH
        try:
            ok = _HASHER.verify(stored, secret)
        except (VerificationError, InvalidHashError):
            ok = False
        if row is None:
            return "unknown device for this user"
        if row[1] is not None:
            return "device revoked"
        return None if ok else "wrong secret"

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

    def record_failure(
        self, user: str, client_ip: str, reason: str, at: float, keep: float
    ) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM login_failures WHERE at < ?", (at - keep,))
            db.execute(
                "INSERT INTO login_failures VALUES (?, ?, ?, ?)", (at, user, client_ip, reason)
            )

    def recent_failures(self, user: str, client_ip: str, since: float) -> tuple[int, int]:
        """Failures since `since` for this user name, and from this address."""
        by_user, by_ip = self.db.execute(
            "SELECT coalesce(sum(user = ?), 0), coalesce(sum(client_ip = ?), 0) "
            "FROM login_failures WHERE at >= ?",
            (user, client_ip, since),
        ).fetchone()
        return int(by_user), int(by_ip)

    # -- web accounts -----------------------------------------------------------------------

    def web(self) -> WebAccounts:
        """The panel's sign-ins in this database (bluegrass.panel.accounts)."""
        return WebAccounts(self.db)

    def web_account(self, user: str) -> Account | None:
        return self.web().get(user)

    def web_accounts(self) -> list[Account]:
        return self.web().all()

    def has_web_admin(self) -> bool:
        return self.web().has_admin()

    def set_web_password(
        self, user: str, password_hash: str, *, admin: bool | None = None
    ) -> Account:
        """Inside a transaction: give `user` (an existing user) a web password; a new session
        epoch every time. `admin` None keeps the flag (a new account is not an administrator).
        Raise UsageError for an unknown user."""
        if not self.has_user(user):
            raise UsageError(f"unknown user {user!r} (see: bluegrass-cloud user list)")
        return self.web().set_password(user, password_hash, admin)

    # -- web jobs ---------------------------------------------------------------------------

    _WEB_JOB_COLUMNS = (
        "id, owner, kind, label, user, segment, state, progress, message, started, finished"
    )

    def add_web_job(self, job: WebJob) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO web_jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job.id,
                    job.owner,
                    job.kind,
                    job.label,
                    job.user,
                    job.segment,
                    job.state,
                    job.progress,
                    job.message,
                    job.started,
                    job.finished,
                ),
            )

    def update_web_job(
        self,
        job_id: str,
        *,
        state: str,
        message: str,
        progress: float | None,
        finished: float | None = None,
        only_if_active: bool = False,
    ) -> bool:
        """Set a job's state; with `only_if_active`, only a job that has not ended yet."""
        query = (
            "UPDATE web_jobs SET state = ?, message = ?, progress = ?, finished = ? WHERE id = ?"
        )
        if only_if_active:
            query += " AND state IN ('queued', 'running')"
        with self.transaction() as db:
            done = db.execute(query, (state, message, progress, finished, job_id))
        return done.rowcount > 0

    def web_job(self, job_id: str) -> WebJob | None:
        row = self.db.execute(
            f"SELECT {self._WEB_JOB_COLUMNS} FROM web_jobs WHERE id = ?",  # noqa: S608 - ours
            (job_id,),
        ).fetchone()
        return WebJob(*row) if row else None

    def web_jobs(self, owner: str, limit: int = 5) -> list[WebJob]:
        rows = self.db.execute(
            f"SELECT {self._WEB_JOB_COLUMNS} FROM web_jobs WHERE owner = ? "  # noqa: S608 - ours
            "ORDER BY started DESC LIMIT ?",
            (owner, limit),
        )
        return [WebJob(*row) for row in rows]

    def active_web_jobs(self, user: str, segment: str) -> list[WebJob]:
        rows = self.db.execute(
            f"SELECT {self._WEB_JOB_COLUMNS} FROM web_jobs "  # noqa: S608 - ours
            "WHERE user = ? AND segment = ? AND state IN ('queued', 'running') ORDER BY started",
            (user, segment),
        )
        return [WebJob(*row) for row in rows]

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

    # -- job history ------------------------------------------------------------------------

    def record_job(self, job: Job) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO jobs (kind, user, segment, scheduled_for, started, finished, "
                "outcome, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job.kind,
                    job.user,
                    job.segment,
                    job.scheduled_for,
                    job.started,
                    job.finished,
                    job.outcome,
                    job.detail,
                ),
            )

    def jobs(self, kind: str, user: str, segment: str) -> list[Job]:
        rows = self.db.execute(
            "SELECT kind, user, segment, scheduled_for, started, finished, outcome, detail "
            "FROM jobs WHERE kind = ? AND user = ? AND segment = ? ORDER BY id",
            (kind, user, segment),
        )
        return [Job(*row) for row in rows]

    def last_job(self, kind: str, user: str, segment: str) -> Job | None:
        row = self.db.execute(
            "SELECT kind, user, segment, scheduled_for, started, finished, outcome, detail "
            "FROM jobs WHERE kind = ? AND user = ? AND segment = ? ORDER BY id DESC LIMIT 1",
            (kind, user, segment),
        ).fetchone()
        return Job(*row) if row else None

    def done_for(self, kind: str, user: str, segment: str, scheduled_for: str) -> bool:
        """Whether the job scheduled for this time has run to an end (not merely been busy)."""
        row = self.db.execute(
            "SELECT 1 FROM jobs WHERE kind = ? AND user = ? AND segment = ? "
            "AND scheduled_for = ? AND outcome != 'busy'",
            (kind, user, segment, scheduled_for),
        ).fetchone()
        return row is not None
