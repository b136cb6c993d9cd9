"""The panel's own reference backend: a plain data root, its own SQLite accounts, argon2.

`ReferenceBackend` behaves as the cloud's kind of machine, `ReferencePiBackend` as the Pi's
(with a drive to eject); `reference_backend(root, mode)` picks one. Not the cloud's or the
Pi's backend (those live in bluegrass.cloud and bluegrass.appliance
and plug into the same bluegrass.panel.backend.Backend protocol). This one exists so the
panel can be tested and demonstrated end to end against real repositories, and as a worked
example of the contract. Layout of its data root:

    ROOT/panel.db                        accounts, login failures, jobs, devices (SQLite)
    ROOT/panel-secret                    the session signing key (0600)
    ROOT/files/<user>/<segment>/         the live tree ("live" restores write here)
    ROOT/repos/<user>/<segment>.git      the history
    ROOT/status/<user>/<segment>.json    optional: last_sync, last_mirror, next_job, problems
    ROOT/status/system.json              optional: {"problems": [[severity, text], …]}
    ROOT/drive/                          Pi mode: the backup drive ("drive" restores)
    ROOT/hold-jobs                       while this file exists, jobs wait between steps
                                         (lets a test watch a job's progress page poll)
    ROOT/setup-code                      optional: while it exists, first-run setup also
                                         asks for the code in it (as the cloud's does);
                                         a successful setup deletes it
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import secrets
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from bluegrass.core import enrollment, sqlschema
from bluegrass.core.errors import BluegrassError, UsageError
from bluegrass.core.names import is_valid
from bluegrass.core.store import Repository, RepositoryError, browse, restore, snapshot
from bluegrass.core.store.manifest import ROOT as ROOT_PATH
from bluegrass.panel.accounts import HASHER, SignIns, WebAccounts
from bluegrass.panel.backend import (
    Account,
    BackendError,
    Dashboard,
    DeviceInfo,
    DriveStatus,
    HealthItem,
    JobKind,
    JobStatus,
    Mode,
    NotFound,
    Problem,
    RestoreTarget,
    SegmentRef,
    SegmentStatus,
    Severity,
    UserInfo,
)
from bluegrass.panel.backendkit import (
    recent_history,
    require_admin,
    restore_folder,
    restore_path,
    session_secret,
    shown_path,
    suspicious,
    utc,
)

MIGRATIONS: list[list[str]] = [
    # 1: the schema from before versioning (IF NOT EXISTS: such databases have it at 0).
    [
        """CREATE TABLE IF NOT EXISTS accounts (
        name TEXT PRIMARY KEY, admin INTEGER NOT NULL, hash TEXT NOT NULL,
        epoch TEXT NOT NULL, created TEXT NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS login_failures (at REAL NOT NULL, name TEXT NOT NULL,
        ip TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS login_failures_at ON login_failures(at)",
        """CREATE TABLE IF NOT EXISTS jobs (
        id TEXT PRIMARY KEY, owner TEXT NOT NULL, kind TEXT NOT NULL, label TEXT NOT NULL,
        state TEXT NOT NULL, progress REAL, message TEXT NOT NULL,
        started REAL, finished REAL)""",
        """CREATE TABLE IF NOT EXISTS devices (
        id TEXT PRIMARY KEY, user TEXT NOT NULL, name TEXT NOT NULL, secret_hash TEXT NOT NULL,
        created REAL NOT NULL, revoked REAL)""",
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ],
    # 2: the sign-ins become the panel's one store (bluegrass.panel.accounts): same columns,
    # the store's table names.
    [
        "ALTER TABLE accounts RENAME TO web_accounts",
        "ALTER TABLE login_failures RENAME TO web_login_failures",
        "DROP INDEX login_failures_at",
        "CREATE INDEX web_login_failures_at ON web_login_failures (at)",
    ],
    # 3: sessions kept in the sign-in store, so that signing out ends them (decision 126).
    # Written out, not taken from bluegrass.panel.accounts.SESSION_TABLES: a migration that
    # has run must never change.
    [
        """CREATE TABLE web_sessions (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL REFERENCES web_accounts (name) ON DELETE CASCADE,
            created REAL NOT NULL,
            seen REAL NOT NULL
        )""",
        "CREATE INDEX web_sessions_name ON web_sessions (name)",
    ],
]
JOBS = [
    JobKind("commit", "Snapshot now", per_segment=True),
    JobKind("verify", "Verify every repository"),
]
# A valid-looking but unusable host key: the reference backend runs no SSH endpoint.
PLACEHOLDER_HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIReferenceBackendHasNoSshEndpoint"


class ReferenceBackend(SignIns):
    """The cloud's kind of machine: each account sees its own segments, restores go "live"."""

    mode: Mode = "cloud"

    def __init__(self, root: Path) -> None:
        self.root = root.absolute()
        self.root.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            sqlschema.migrate(db, MIGRATIONS, str(self.root / "panel.db"))

    # -- plumbing -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # One short connection per use: safe across threads and gunicorn workers; WAL lets
        # readers go on while a job writes its progress.
        db = sqlite3.connect(self.root / "panel.db", timeout=10, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            yield db
        finally:
            db.close()

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @contextlib.contextmanager
    def web_accounts(self) -> Iterator[WebAccounts]:
        with self._connect() as db:
            yield WebAccounts(db)

    def secret_key(self) -> str:
        return session_secret(self.root / "panel-secret")

    def live_dir(self, user: str, segment: str) -> Path:
        return self.root / "files" / user / segment

    def repo_dir(self, user: str, segment: str) -> Path:
        return self.root / "repos" / user / f"{segment}.git"

    # -- first run and accounts -----------------------------------------------------------

    def setup_code_required(self) -> bool:
        return self._setup_code() is not None

    def _setup_code(self) -> str | None:
        try:
            return (self.root / "setup-code").read_text().strip() or None
        except FileNotFoundError:
            return None

    def check_setup_code(self, code: str) -> bool:
        expected = self._setup_code()
        if expected is None or not self.needs_setup():
            return False
        return hmac.compare_digest(code.strip().encode(), expected.encode())

    def complete_setup(self, name: str, password: str, enrollment_code: str | None) -> Account:
        if enrollment_code is not None:
            try:
                enrollment.decode(enrollment_code)
            except BluegrassError as exc:
                raise BackendError(str(exc)) from exc
        digest = HASHER.hash(password)
        with self._db() as db:
            # Inside one IMMEDIATE transaction: two setups racing cannot both win.
            store = WebAccounts(db)
            if store.has_admin():
                raise BackendError("Setup is already done; sign in instead.")
            try:
                found = store.set_password(name, digest, admin=True)
            except UsageError as exc:
                raise BackendError(str(exc)) from exc
            if enrollment_code is not None:
                db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('enrollment_code', ?)", (enrollment_code,)
                )
        (self.root / "setup-code").unlink(missing_ok=True)  # it worked once; never again
        (self.root / "repos" / name).mkdir(parents=True, exist_ok=True)
        return found

    def change_password(self, account: Account, password: str) -> Account:
        self._set_password(account.name, password)
        found = self.account(account.name)
        if found is None:
            raise NotFound("no such account")
        return found

    def _set_password(self, name: str, password: str) -> None:
        digest = HASHER.hash(password)
        with self._db() as db:
            store = WebAccounts(db)
            if store.get(name) is None:
                raise NotFound(f"no user {name}")
            store.set_password(name, digest)

    # -- data -----------------------------------------------------------------------------

    def _all_segments(self) -> list[SegmentRef]:
        found = []
        repos = self.root / "repos"
        if repos.is_dir():
            for user in sorted(repos.iterdir()):
                if not is_valid(user.name):
                    continue
                for repo in sorted(user.glob("*.git")):
                    if is_valid(repo.name[:-4]):
                        found.append(SegmentRef(user.name, repo.name[:-4]))
        return found

    def segments(self, account: Account) -> list[SegmentRef]:
        every = self._all_segments()
        if self.mode == "pi":
            return every  # the Pi has one administrator, who sees every user's drive copy
        return [s for s in every if s.user == account.name]

    def repository(self, account: Account, user: str, segment: str) -> Repository:
        if SegmentRef(user, segment) not in self.segments(account):
            raise NotFound("No such segment.")
        try:
            return Repository.open(self.repo_dir(user, segment))
        except RepositoryError as exc:
            raise NotFound(str(exc)) from exc

    def _status_file(self, *parts: str) -> dict[str, object]:
        path = self.root.joinpath("status", *parts)
        if not path.is_file():
            return {}
        loaded = json.loads(path.read_text())
        return loaded if isinstance(loaded, dict) else {}

    @staticmethod
    def _problems(raw: object) -> list[Problem]:
        out = []
        for item in raw if isinstance(raw, list) else []:
            severity, text = item
            out.append(Problem(Severity[str(severity).upper()], str(text)))
        return out

    def dashboard(self, account: Account) -> Dashboard:
        board = Dashboard(jobs=list(JOBS))
        for ref in self.segments(account):
            status = SegmentStatus(ref.user, ref.segment)
            extra = self._status_file(ref.user, f"{ref.segment}.json")
            for key in ("last_sync", "last_mirror"):
                if isinstance(extra.get(key), str):
                    setattr(status, key, datetime.fromisoformat(str(extra[key])))
            status.next_job = str(extra["next_job"]) if extra.get("next_job") else None
            status.problems = self._problems(extra.get("problems"))
            try:
                recent = recent_history(Repository.open(self.repo_dir(ref.user, ref.segment)))
            except (RepositoryError, BluegrassError) as exc:
                status.problems.append(Problem(Severity.ERROR, f"repository: {exc}"))
                recent = []
            if recent:
                status.last_commit = recent[0].date
            else:
                status.problems.append(Problem(Severity.INFO, "No snapshot yet."))
            status.problems += suspicious(recent)
            board.segments.append(status)
        board.problems = self._problems(self._status_file("system.json").get("problems"))
        if self.mode == "pi":
            board.drive, board.health = self._drive(), self._health()
            if not board.drive.present:
                board.problems.append(Problem(Severity.ERROR, "The backup drive is missing."))
        with self._db() as db:
            rows = db.execute(
                "SELECT * FROM jobs WHERE owner = ? ORDER BY started DESC LIMIT 5",
                (account.name,),
            ).fetchall()
        board.recent_jobs = [self._job_row(r) for r in rows]
        return board

    def _drive(self) -> DriveStatus:
        drive = self.root / "drive"
        if not drive.is_dir():
            return DriveStatus(present=False, mounted=False)
        usage = shutil.disk_usage(drive)
        return DriveStatus(True, True, "reference drive", usage.free, usage.total, can_eject=True)

    def _health(self) -> list[HealthItem]:
        usage = shutil.disk_usage(self.root)
        used = 100 * (usage.total - usage.free) / usage.total
        items = [
            HealthItem("Disk", f"{used:.0f} % used", Severity.WARNING if used > 90 else Severity.OK)
        ]
        load = os.getloadavg()[0]
        items.append(HealthItem("Load", f"{load:.2f}"))
        meminfo = Path("/proc/meminfo")
        if meminfo.exists():
            fields = {
                line.split(":")[0]: int(line.split()[1])
                for line in meminfo.read_text().splitlines()
                if line.split()[1:2] and line.split()[1].isdigit()
            }
            if fields.get("MemTotal"):
                share = 100 * (1 - fields.get("MemAvailable", 0) / fields["MemTotal"])
                items.append(HealthItem("Memory", f"{share:.0f} % used"))
        thermal = Path("/sys/class/thermal/thermal_zone0/temp")
        if thermal.exists():
            with contextlib.suppress(ValueError, OSError):
                items.append(HealthItem("Temperature", f"{int(thermal.read_text()) / 1000:.1f} °C"))
        return items

    # -- jobs -----------------------------------------------------------------------------

    def _job_row(self, row: tuple) -> JobStatus:  # type: ignore[type-arg]
        return JobStatus(
            id=row[0],
            kind=row[2],
            label=row[3],
            state=row[4],
            progress=row[5],
            message=row[6],
            started=utc(row[7]),
            finished=utc(row[8]),
        )

    def start_job(
        self, account: Account, kind: str, user: str | None, segment: str | None
    ) -> JobStatus:
        known = {j.kind: j for j in JOBS}
        if kind not in known:
            raise BackendError(f"Unknown job {kind!r}.")
        if kind == "commit":
            if user is None or segment is None:
                raise BackendError("Which segment?")
            self.repository(account, user, segment)  # NotFound if not visible
            targets = [SegmentRef(user, segment)]
            label = f"Snapshot {user}/{segment}"
        else:
            targets = self.segments(account)
            label = known[kind].label
        job_id = secrets.token_hex(8)
        with self._db() as db:
            db.execute(
                "INSERT INTO jobs VALUES (?, ?, ?, ?, 'queued', 0, '', ?, NULL)",
                (job_id, account.name, kind, label, time.time()),
            )
        threading.Thread(target=self._run_job, args=(job_id, kind, targets), daemon=True).start()
        return self.job(account, job_id)

    def _update(self, job_id: str, **values: object) -> None:
        sets = ", ".join(f"{k} = ?" for k in values)
        with self._db() as db:
            db.execute(f"UPDATE jobs SET {sets} WHERE id = ?", (*values.values(), job_id))  # noqa: S608 - keys are ours

    def _hold(self) -> None:
        while (self.root / "hold-jobs").exists():
            time.sleep(0.05)  # a test holds the job here to watch it run; poll its file

    def _run_job(self, job_id: str, kind: str, targets: list[SegmentRef]) -> None:
        problems: list[str] = []
        try:
            for i, ref in enumerate(targets):
                self._update(
                    job_id,
                    state="running",
                    progress=i / max(1, len(targets)),
                    message=f"{ref.user}/{ref.segment}",
                )
                self._hold()
                repo = Repository.open(self.repo_dir(ref.user, ref.segment))
                if kind == "commit":
                    result = snapshot(repo, self.live_dir(ref.user, ref.segment))
                    problems.append("committed" if result.committed else "nothing changed")
                else:
                    found = repo.verify()
                    problems += [f"{ref.user}/{ref.segment}: {p}" for p in found]
            message = "; ".join(problems) if problems else "all repositories are sound"
            failed = kind == "verify" and bool(problems)
            self._update(
                job_id,
                state="failed" if failed else "done",
                progress=1.0,
                message=message,
                finished=time.time(),
            )
        except Exception as exc:  # the job's page shows why it stopped
            self._update(job_id, state="failed", message=str(exc), finished=time.time())

    def job(self, account: Account, job_id: str) -> JobStatus:
        with self._db() as db:
            row = db.execute(
                "SELECT * FROM jobs WHERE id = ? AND owner = ?", (job_id, account.name)
            ).fetchone()
        if row is None:
            raise NotFound("No such job.")
        return self._job_row(row)

    # -- restore --------------------------------------------------------------------------

    def restore_targets(self, account: Account) -> list[RestoreTarget]:
        return ["drive"] if self.mode == "pi" else ["live"]

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
        repo = self.repository(account, user, segment)
        path = restore_path(path)
        if target not in self.restore_targets(account):
            raise BackendError("Restoring there is not possible here.")
        shown = shown_path(path)
        try:
            if target == "drive":
                folder = restore_folder(folder)
                dest = self.root / "drive" / "restored" / folder
                if dest.exists():
                    raise BackendError(f"The folder {folder} already exists on the drive.")
                restore(repo, dest, at=commit, path=os.fsdecode(path))
                return f"Restored {shown} into restored/{folder} on the drive."
            return self._restore_live(repo, user, segment, commit, path, shown)
        except BluegrassError as exc:
            raise BackendError(str(exc)) from exc

    def _restore_live(
        self, repo: Repository, user: str, segment: str, commit: str, path: bytes, shown: str
    ) -> str:
        live = self.live_dir(user, segment)
        # The live tree's current state goes into history first, so the restore can be undone.
        before = snapshot(repo, live, label="before restore")
        dest = live if path == ROOT_PATH else live / os.fsdecode(path)
        # No component of the destination may be a symlink: the live tree is the user's and
        # a link there must not send the restore outside it.
        probe = live
        for part in [] if path == ROOT_PATH else os.fsdecode(path).split("/"):
            probe = probe / part
            if probe.is_symlink():
                raise BackendError(f"{shown} passes through a symbolic link in the live tree.")
        work = self.root / "tmp"
        work.mkdir(exist_ok=True)
        staging = work / f"restore-{secrets.token_hex(6)}"
        trash = work / f"replaced-{secrets.token_hex(6)}"
        try:
            restore(repo, staging, at=commit, path=os.fsdecode(path))
            entry = browse.index(repo, browse.resolve(repo, commit)).entries[path]
            restored = staging if entry.kind == "d" else staging / os.fsdecode(browse.name_of(path))
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.exists() or dest.is_symlink():
                dest.rename(trash)
            restored.rename(dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            if trash.is_dir() and not trash.is_symlink():
                shutil.rmtree(trash, ignore_errors=True)
            else:
                trash.unlink(missing_ok=True)
        kept = "kept in a new snapshot" if before.committed else "already in history"
        return f"Restored {shown} into the live folder; the version it replaced is {kept}."

    # -- administration -------------------------------------------------------------------

    def users(self, account: Account) -> list[UserInfo]:
        require_admin(account)
        with self._db() as db:
            rows = [(a.name, a.admin) for a in WebAccounts(db).all()]
            devices = db.execute("SELECT * FROM devices ORDER BY created").fetchall()
        out = []
        for name, admin in rows:
            segs = [s.segment for s in self._all_segments() if s.user == name]
            devs = [
                DeviceInfo(d[0], d[2], datetime.fromtimestamp(d[4], UTC), utc(d[5]))
                for d in devices
                if d[1] == name
            ]
            out.append(UserInfo(name, bool(admin), segs, devs))
        return out

    def add_user(self, account: Account, name: str, password: str, admin: bool) -> None:
        require_admin(account)
        if not is_valid(name):
            raise BackendError("Not a valid user name.")
        digest = HASHER.hash(password)
        with self._db() as db:
            store = WebAccounts(db)
            if store.get(name) is not None:
                raise BackendError(f"User {name} exists already.")
            store.set_password(name, digest, admin)
        (self.root / "repos" / name).mkdir(parents=True, exist_ok=True)

    def reset_password(self, account: Account, name: str, password: str) -> None:
        require_admin(account)
        self._set_password(name, password)

    def revoke_device(self, account: Account, name: str, device: str) -> None:
        require_admin(account)
        with self._db() as db:
            done = db.execute(
                "UPDATE devices SET revoked = ? WHERE id = ? AND user = ? AND revoked IS NULL",
                (time.time(), device, name),
            )
        if done.rowcount == 0:
            raise NotFound("No such device.")

    def new_enrollment_code(self, account: Account, name: str, device_name: str) -> str:
        require_admin(account)
        if self.account(name) is None:
            raise NotFound(f"No user {name}.")
        device = "d" + secrets.token_hex(4)
        secret = secrets.token_urlsafe(32)
        with self._db() as db:
            db.execute(
                "INSERT INTO devices VALUES (?, ?, ?, ?, ?, NULL)",
                (device, name, device_name, HASHER.hash(secret), time.time()),
            )
        return enrollment.Enrollment(
            server="localhost",
            sftp_port=2022,
            http_port=8080,
            user=name,
            device=device,
            secret=secret,
            host_key=PLACEHOLDER_HOST_KEY,
        ).encode()


class ReferencePiBackend(ReferenceBackend):
    """The Pi's kind of machine: every segment, restores onto ROOT/drive, which it can eject."""

    mode: Mode = "pi"

    def eject_drive(self, account: Account) -> str:
        """Given an account, return that the drive can be unplugged (a folder stands in)."""
        return "The drive can be unplugged now."


def reference_backend(root: Path, mode: Mode = "cloud") -> ReferenceBackend:
    """Given a data root and a mode, return the reference backend of that kind."""
    return ReferencePiBackend(root) if mode == "pi" else ReferenceBackend(root)
