"""What the panel needs from the machine it runs on: the Backend interface.

The panel renders pages; a backend owns the data. The cloud (bluegrass.cloud: accounts in
SQLite, DATA/repos, its scheduler) and the Pi (bluegrass.appliance: the drive, its mirror and
health) each implement this protocol; bluegrass.panel.reference is the panel's own
implementation over a plain data root, used by its tests and as a worked example.

Rules every backend follows (docs/panel.md, "The Backend interface"):

* Every method that takes an `account` enforces what that account may see and do: a segment
  that is not visible to it is `NotFound`, exactly as one that does not exist, so names do
  not leak; admin operations by a non-admin are `Forbidden`. The panel checks too, but the
  backend is the authority.
* Errors a person can act on are `BackendError` with a one-line message; the panel shows it.
* Paths handed to `restore` are real paths (bytes, manifest keys) already checked by
  bluegrass.core.store.browse.check_path; a backend must still not let one leave its target.
* Methods are called from several gunicorn workers and threads at once; state that must be
  shared between requests (login failures, jobs) lives outside the process (SQLite).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, Protocol, runtime_checkable

from bluegrass.core.store import Repository
from bluegrass.panel.accounts import Account, LoginFailure

Mode = Literal["pi", "cloud"]


class BackendError(Exception):
    """Something the person using the panel can act on; the message is shown as it is."""


class NotFound(BackendError):
    """No such thing, or not visible to this account (the two are not told apart)."""


class Forbidden(BackendError):
    """The account may see this but not do that (e.g. a non-admin managing users)."""


@dataclass(frozen=True, order=True)
class SegmentRef:
    user: str
    segment: str


class Severity(enum.IntEnum):
    OK = 0
    INFO = 1
    WARNING = 2
    ERROR = 3


@dataclass(frozen=True)
class Problem:
    severity: Severity
    text: str


@dataclass
class SegmentStatus:
    user: str
    segment: str
    last_sync: datetime | None = None  # last time a laptop synced this segment
    last_commit: datetime | None = None  # newest snapshot
    last_mirror: datetime | None = None  # last successful mirror to the Pi's drive
    next_job: str | None = None  # e.g. "commit, 2026-05-01 03:00"
    problems: list[Problem] = field(default_factory=list)

    @property
    def worst(self) -> Severity:
        return max((p.severity for p in self.problems), default=Severity.OK)


@dataclass
class DriveStatus:
    present: bool
    mounted: bool
    label: str | None = None
    free_bytes: int | None = None
    total_bytes: int | None = None
    can_eject: bool = False


@dataclass(frozen=True)
class HealthItem:
    name: str  # "Disk", "Memory", "Load", "Temperature"
    value: str  # already formatted for a person: "41 % used", "52.1 °C"
    severity: Severity = Severity.OK


@dataclass(frozen=True)
class StorageUse:
    """What a user occupies on the server (live files and histories) against their quota."""

    used: int  # bytes
    quota: int | None = None  # bytes; None: no quota

    @property
    def over(self) -> bool:
        """At or over: the cloud's sync endpoint takes no new files from them."""
        return self.quota is not None and self.used >= self.quota

    @property
    def share(self) -> float | None:
        """Used / quota, at most 1, for a meter; None without a quota."""
        return None if not self.quota else min(1.0, self.used / self.quota)


@dataclass(frozen=True)
class JobKind:
    kind: str  # an id the backend understands, e.g. "commit", "mirror", "verify"
    label: str  # "Snapshot now"
    per_segment: bool = False  # offered on each segment's row rather than once


@dataclass
class JobStatus:
    id: str
    kind: str
    label: str
    state: Literal["queued", "running", "done", "failed"]
    progress: float | None = None  # 0..1 when known
    message: str = ""
    started: datetime | None = None
    finished: datetime | None = None

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "kind": self.kind,
            "label": self.label,
            "state": self.state,
            "progress": self.progress,
            "message": self.message,
            "active": self.active,
        }


@dataclass(frozen=True)
class ReplicaState:
    """The cloud's replica on object storage, for administrators."""

    last_complete: datetime | None  # when the last upload of everything ended
    size: int  # bytes the newest manifests name
    problem: str | None = None  # why the last upload failed
    failing_since: datetime | None = None
    attempts: int = 0  # failed attempts since the last success


@dataclass
class Dashboard:
    segments: list[SegmentStatus] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  # drive missing, cloud unreachable
    drive: DriveStatus | None = None  # the Pi's drive; None where there is none (cloud)
    health: list[HealthItem] = field(default_factory=list)
    jobs: list[JobKind] = field(default_factory=list)
    recent_jobs: list[JobStatus] = field(default_factory=list)
    storage: StorageUse | None = None  # the signed-in user's; None where none is kept (Pi)
    replica: ReplicaState | None = None  # administrators, where a replica is configured


@dataclass(frozen=True)
class DeviceInfo:
    id: str
    name: str
    created: datetime
    revoked: datetime | None = None


@dataclass
class UserInfo:
    name: str
    admin: bool
    segments: list[str] = field(default_factory=list)
    devices: list[DeviceInfo] = field(default_factory=list)
    storage: StorageUse | None = None


RestoreTarget = Literal["live", "drive"]


# The interface is composed of small role interfaces, each a few methods with one-line
# contracts (as restic's internal/restic/repository.go composes Repository). Every backend is a
# `Backend`: sign-ins, history, jobs, restore and administration. `DeviceAdmin`, `Drive` and
# `EmergencyAccess` are what only some have; the panel offers their pages and buttons only where
# `isinstance(backend, DeviceAdmin)` / `Drive` / `EmergencyAccess` holds, so no backend stubs
# what its machine does not have (decision 100).


@runtime_checkable
class SignInBackend(Protocol):
    """First run, sign-in, passwords and the memory of failed sign-ins."""

    mode: Mode

    def needs_setup(self) -> bool:
        """True until the first administrator exists; the panel then only offers setup."""
        ...

    def complete_setup(self, name: str, password: str, enrollment_code: str | None) -> Account:
        """Create the first administrator, atomically: BackendError if one already exists.

        On the Pi, `enrollment_code` (optional) is the cloud's code for this Pi to use.
        Where setup takes a setup code, a successful setup ends that code for good.
        """
        ...

    def setup_code_required(self) -> bool:
        """True if setup also asks for a one-time setup code that only whoever runs the
        server can see (the cloud, on the internet); False where reaching the panel is
        enough (the Pi, on the LAN). The panel checks it with `check_setup_code` first."""
        ...

    def check_setup_code(self, code: str) -> bool:
        """True if `code` is the pending setup code, compared in constant time; False when
        none is pending. Wrong codes count as failed sign-ins (the panel records them)."""
        ...

    def check_password(self, name: str, password: str) -> Account | None:
        """The account if `password` is right, else None (unknown names included)."""
        ...

    def account(self, name: str) -> Account | None:
        """The account as it is now (each request re-reads it: removed or reset ends it)."""
        ...

    def change_password(self, account: Account, password: str) -> Account:
        """The account with its new password and a new session epoch."""
        ...

    def login_failures(self, name: str, ip: str, since: datetime) -> list[LoginFailure]:
        """Failures since `since` for this account name OR from this address."""
        ...

    def record_login_failure(self, name: str, ip: str) -> None:
        """Remember one failed sign-in (or wrong setup code) for `name` from `ip`."""
        ...

    def clear_login_failures(self, name: str) -> None:
        """After a successful login: that account's failures no longer count."""
        ...

    def open_session(self, name: str, idle: timedelta, lifetime: timedelta) -> str:
        """A new session for the account `name`; returns its token (for the signed cookie).
        Sessions past `idle` unused or `lifetime` old may be deleted on the way."""
        ...

    def session_account(self, token: str, idle: timedelta, lifetime: timedelta) -> Account | None:
        """The session's account if it is open: not ended, not older than `lifetime`, used
        within `idle`; else None. A password change ends every session of its account."""
        ...

    def end_session(self, token: str) -> None:
        """Sign-out: the session ends for every copy of its cookie."""
        ...


@runtime_checkable
class HistoryBackend(Protocol):
    """The segments an account may browse, their histories and the dashboard."""

    def segments(self, account: Account) -> list[SegmentRef]:
        """The segments this account may browse, sorted."""
        ...

    def repository(self, account: Account, user: str, segment: str) -> Repository:
        """An open Repository of a visible segment, else NotFound."""
        ...

    def dashboard(self, account: Account) -> Dashboard:
        """What the account's segments and this machine look like now."""
        ...


@runtime_checkable
class JobsBackend(Protocol):
    """Background jobs, shared by every worker."""

    def start_job(
        self, account: Account, kind: str, user: str | None, segment: str | None
    ) -> JobStatus:
        """Start a job in the background and return at once; poll it with `job`."""
        ...

    def job(self, account: Account, job_id: str) -> JobStatus:
        """A job this account started (or may see), else NotFound."""
        ...


@runtime_checkable
class RestoreBackend(Protocol):
    """Putting a path back as it was in a snapshot."""

    def restore_targets(self, account: Account) -> list[RestoreTarget]:
        """Where this account can restore to: "live" (cloud), "drive" (Pi), or nothing."""
        ...

    def restore(
        self,
        account: Account,
        user: str,
        segment: str,
        commit: str,
        path: bytes,
        target: RestoreTarget,
        folder: str | None = None,
    ) -> str:
        """Restore `path` (ROOT b"." for the whole segment) as of `commit`.

        "live": into the segment's live tree, after a snapshot of the live tree so the
        current version stays in history. "drive": into a new folder named `folder` on the
        drive. Returns a one-line message for the person.
        """
        ...


@runtime_checkable
class AdminBackend(Protocol):
    """The panel's accounts, for administrators (the Pi: its administrators only)."""

    def users(self, account: Account) -> list[UserInfo]:
        """Every user with their segments and devices."""
        ...

    def add_user(self, account: Account, name: str, password: str, admin: bool) -> None:
        """A new user who can sign in with `password`."""
        ...

    def reset_password(self, account: Account, name: str, password: str) -> None:
        """A new password for `name`, and a new session epoch (their sessions end)."""
        ...


@runtime_checkable
class DeviceAdmin(Protocol):
    """Devices that sync (the cloud's): only a backend that has them implements this."""

    def revoke_device(self, account: Account, name: str, device: str) -> None:
        """The device can no longer sync or fetch; NotFound if `name` has no such device."""
        ...

    def new_enrollment_code(self, account: Account, name: str, device_name: str) -> str:
        """A new device for user `name` and its enrollment code (shown once)."""
        ...


@runtime_checkable
class Drive(Protocol):
    """A backup drive that can be unplugged (the Pi's): only such a backend implements this."""

    def eject_drive(self, account: Account) -> str:
        """Unmount the drive so it can be unplugged; the message says whether it is safe."""
        ...


@dataclass(frozen=True)
class KitState:
    """An account's printed recovery kit, where the backend can make one (the cloud's)."""

    available: bool  # False: nothing can be printed yet, and `note` says why
    printed: datetime | None = None  # when a kit was last made for this account
    out_of_date: bool = False  # a secret printed on that kit has changed since
    note: str | None = None


@runtime_checkable
class RecoveryKit(Protocol):
    """Printed recovery kits (the cloud's, with a replica): only such a backend implements it."""

    def kit_state(self, account: Account) -> KitState:
        """Whether the account can have a kit, and whether the one it printed is current."""
        ...

    def recovery_kit(self, account: Account) -> bytes:
        """The account's own kit as a PDF, remembered as printed (with what it holds, so
        `kit_state` can tell when it goes out of date); BackendError if none can be made."""
        ...


@runtime_checkable
class Backend(SignInBackend, HistoryBackend, JobsBackend, RestoreBackend, AdminBackend, Protocol):
    """What every backend is; see the module docstring and docs/panel.md."""


EmergencyState = Literal["waiting", "granted", "refused", "ended"]


@dataclass(frozen=True)
class EmergencyRequest:
    """A trusted person's request for read access to an owner's history."""

    id: int
    owner: str
    grantee: str
    requested: datetime
    wait_days: int  # as it was when the request was made
    state: EmergencyState
    closed: datetime | None = None  # refused or ended

    @property
    def grants_at(self) -> datetime:
        """When the wait ends, by the server's clock: access starts then unless refused."""
        return self.requested + timedelta(days=self.wait_days)

    @property
    def open(self) -> bool:
        return self.state in ("waiting", "granted")


@dataclass(frozen=True)
class TrustedPerson:
    """Someone an owner named (seen by the owner), or who named the account (by the grantee):
    `other` is the person on the other side, `request` the newest request between them."""

    other: str
    wait_days: int
    added: datetime
    request: EmergencyRequest | None = None


@dataclass(frozen=True)
class EmergencyEvent:
    at: datetime
    grantee: str
    event: str  # added, changed, removed, requested, refused, granted, ended, accessed
    text: str  # one line for the owner


@dataclass
class EmergencyPage:
    trusted: list[TrustedPerson] = field(default_factory=list)  # whom this account trusts
    trusted_by: list[TrustedPerson] = field(default_factory=list)  # who trusts this account
    log: list[EmergencyEvent] = field(default_factory=list)  # this account's, newest first
    min_days: int = 1
    max_days: int = 90
    default_days: int = 7


@runtime_checkable
class EmergencyAccess(Protocol):
    """Emergency access (the cloud's): trusted people may ask for read-only access to an
    owner's history and get it after a waiting period the owner can stop. Reads go through
    `HistoryBackend` (a live grant makes the owner's segments visible to the grantee, and
    nothing else of the owner's); every write stays the owner's own."""

    def emergency(self, account: Account) -> EmergencyPage:
        """The account's trusted people, who trusts it, and its log."""
        ...

    def add_trusted(self, account: Account, name: str, wait_days: int) -> None:
        """Name `name` (another user with a web login) as trusted, or change their wait;
        BackendError for oneself, a non-user or a wait outside the page's range."""
        ...

    def remove_trusted(self, account: Account, name: str) -> None:
        """No longer trusted: an open request ends at once, sessions included."""
        ...

    def request_access(self, account: Account, owner: str) -> EmergencyRequest:
        """The account asks for access to `owner`'s history; NotFound unless `owner` named it."""
        ...

    def end_access(self, account: Account, grantee: str) -> EmergencyRequest:
        """The owner refuses a waiting request or ends a granted one; NotFound if none is open."""
        ...

    def note_access(self, account: Account, owner: str, session: str) -> None:
        """Log the account reading `owner`'s history under a live grant, once per session
        (`session` is an opaque key of the sign-in, never its token)."""
        ...
