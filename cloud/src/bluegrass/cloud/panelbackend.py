"""The cloud's web interface: the panel (bluegrass.panel) over the cloud's own data.

CloudBackend implements bluegrass.panel.backend.Backend and DeviceAdmin (docs/panel.md; it has
no Drive) on a data root:

- accounts: web logins live in DATA/bluegrass.db (web_accounts, one per user, argon2id,
  apart from device secrets); the first administrator comes from the panel's first-run
  setup, which also takes the one-time setup code that `run` logs
  (bluegrass.cloud.setupcode), or from `bluegrass-cloud user password NAME --admin`;
- visibility: every account, administrators included, sees only its own user's segments;
  another user's segment is NotFound exactly like a missing one; the one exception is
  emergency access (bluegrass.cloud.emergency): a grantee with a live grant reads that
  owner's segments, and writes nothing of theirs (`_visible` is the one read check,
  `_own` the write check);
- administration goes through the same code as the command line: `user add` (create_user),
  `device add` (add_device), `device revoke`;
- "snapshot now" runs `commit`'s code in a process of its own (bluegrass.cloud.webjobs);
- restoring into the live tree snapshots it first, then puts the path back in place
  (bluegrass.cloud.liverestore).

`create_panel(data_root)` builds the Flask app that bluegrass.cloud.webapp serves.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from bluegrass.cloud import authproxy, corruption, emergency, kit, quota, settings, webjobs
from bluegrass.cloud.accounts import Accounts
from bluegrass.cloud.commits import BUSY, SegmentCommit, commit_one, is_busy, is_upload, walk_tree
from bluegrass.cloud.commitwatch import stuck_commits
from bluegrass.cloud.datadir import STATUS_FILE, DataRoot
from bluegrass.cloud.emergency import DEFAULT_DAYS, MAX_DAYS, MIN_DAYS, EmergencyStore
from bluegrass.cloud.kit import printed
from bluegrass.cloud.liverestore import restore_live
from bluegrass.cloud.replica import status as replica_status
from bluegrass.cloud.scheduler import last_occurrence
from bluegrass.cloud.setupcode import remove_setup_code, setup_code_matches
from bluegrass.cloud.users import add_device, create_user
from bluegrass.cloud.webjobstore import WebJob
from bluegrass.core import names
from bluegrass.core.config import Config, defaults
from bluegrass.core.errors import BluegrassError, UsageError
from bluegrass.core.store import Repository, RepositoryError, browse
from bluegrass.core.store.manifest import ROOT
from bluegrass.panel.accounts import SignIns, WebAccounts, hash_password
from bluegrass.panel.backend import (
    Account,
    BackendError,
    Dashboard,
    DeviceInfo,
    EmergencyEvent,
    EmergencyPage,
    EmergencyRequest,
    Forbidden,
    HealthItem,
    JobKind,
    JobStatus,
    KitState,
    Mode,
    NotFound,
    Problem,
    ReplicaState,
    RestoreTarget,
    SegmentRef,
    SegmentStatus,
    Severity,
    StorageUse,
    TrustedPerson,
    UserInfo,
)
from bluegrass.panel.backendkit import (
    human_size,
    recent_history,
    require_admin,
    restore_path,
    session_secret,
    shown_path,
    suspicious,
    utc,
)

if TYPE_CHECKING:
    from flask import Flask

SESSION_KEY_FILE = "web-session.key"
JOBS = [JobKind("commit", webjobs.KINDS["commit"], per_segment=True)]
# An upload temp file not written to for this long is no longer being uploaded.
STUCK_UPLOAD = timedelta(minutes=30)
SCAN_LIMIT = 200_000  # entries looked at per live tree for the dashboard
SCAN_CACHE = 60.0  # seconds a live tree's scan is reused (per worker)
AUTH_LOG_TAIL = 8 << 20  # at most this much of the auth log is read back for the last login
AUTH_LOG_CHUNK = 64 << 10


def secret_key(data_root: Path) -> str:
    """The session signing key, DATA/web-session.key (0600): made once, shared by every worker."""
    return session_secret(data_root / SESSION_KEY_FILE)


def _job_status(job: WebJob) -> JobStatus:
    state = job.state if job.state in ("queued", "running", "done", "failed") else "failed"
    return JobStatus(
        id=job.id,
        kind=job.kind,
        label=job.label,
        state=state,  # type: ignore[arg-type]
        progress=job.progress,
        message=job.message,
        started=utc(job.started),
        finished=utc(job.finished),
    )


class _Scan:
    """What the dashboard needs from a live tree, found by one walk (never following links)."""

    def __init__(self, tree: Path, now: float) -> None:
        self.stuck: list[tuple[str, float]] = []  # (path, last written) of stale uploads
        self.complete = True
        seen = 0
        cutoff = now - STUCK_UPLOAD.total_seconds()
        for entry in walk_tree(tree):
            seen += 1
            if seen > SCAN_LIMIT:
                self.complete = False
                return
            try:
                if not entry.is_dir(follow_symlinks=False) and is_upload(entry):
                    written = entry.stat(follow_symlinks=False).st_mtime
                    if written < cutoff:
                        self.stuck.append((str(Path(entry.path).relative_to(tree)), written))
            except OSError:
                continue


def _accepted_at(line: bytes, user: str, wanted: bytes) -> datetime | None:
    """The time of an accepted sync endpoint login of `user` on this auth log line, or None."""
    if wanted not in line or b'"accepted"' not in line:
        return None
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    if (
        not isinstance(entry, dict)
        or entry.get("outcome") != "accepted"
        or entry.get("user") != user
        or entry.get("via", "sftp") != "sftp"  # git over HTTP is not a sync
        or not isinstance(entry.get("at"), (int, float))
    ):
        return None
    return datetime.fromtimestamp(entry["at"]).astimezone()


class CloudBackend(SignIns):
    mode: Mode = "cloud"

    def __init__(self, root: DataRoot) -> None:
        self.root = root
        self._scans: dict[Path, tuple[float, _Scan]] = {}
        self._scan_lock = threading.Lock()

    # -- plumbing -------------------------------------------------------------------------

    def _accounts(self) -> Accounts:
        return Accounts.open(self.root.path)

    @contextlib.contextmanager
    def web_accounts(self) -> Iterator[WebAccounts]:
        with self._accounts() as accounts:
            yield accounts.web()

    def _visible(self, account: Account, user: str, segment: str) -> None:
        """NotFound unless the account may read this user's segments: its own, or an owner's
        who granted it emergency access that is live now (read from the database on every
        call, so an ended grant ends in sessions already open). Names do not leak."""
        if not names.is_valid(user) or not names.is_valid(segment):
            raise NotFound("No such segment.")
        if user != account.name and user not in self._granted_owners(account):
            raise NotFound("No such segment.")

    def _own(self, account: Account, user: str, segment: str) -> None:
        """For every write: the account's own segments only. A grantee gets Forbidden (it
        may see the segment), anyone else NotFound."""
        self._visible(account, user, segment)
        if user != account.name:
            raise Forbidden(
                "Emergency access is read-only: download what you need (zip or tar.gz) and "
                "unpack it into a new folder of your own."
            )

    def _emergency(self) -> EmergencyStore:
        return EmergencyStore.open(self.root.path)

    def _granted_owners(self, account: Account) -> list[str]:
        with self._emergency() as store:
            store.refresh()
            return store.granted_owners(account.name)

    def _user_exists(self, accounts: Accounts, name: str) -> bool:
        return names.is_valid(name) and (
            (self.root.files / name).is_dir() or accounts.has_user(name)
        )

    # -- first run and accounts -----------------------------------------------------------

    def setup_code_required(self) -> bool:
        return True  # a cloud server is on the internet: setup is never first-come

    def check_setup_code(self, code: str) -> bool:
        return setup_code_matches(self.root.path, code) and self.needs_setup()

    def complete_setup(self, name: str, password: str, enrollment_code: str | None) -> Account:
        if not names.is_valid(name):
            raise BackendError("The name may use a-z, 0-9 and '-', up to 63 characters.")

        def claim(accounts: Accounts) -> None:
            # Inside the transaction that makes the account: two setups racing cannot both win.
            if accounts.has_web_admin():
                raise BackendError("Setup is already done; sign in instead.")
            accounts.set_web_password(name, digest, admin=True)

        try:
            digest = hash_password(password)
            if (self.root.files / name).is_dir():
                # An existing user (made with `user add`) becomes the administrator.
                with self._accounts() as accounts, accounts.transaction():
                    accounts.add_user(name)
                    claim(accounts)
            else:
                create_user(self.root, name, device_name=None, within=claim)
        except UsageError as exc:
            raise BackendError(str(exc)) from exc
        remove_setup_code(self.root.path)  # it worked once; never again
        found = self.account(name)
        if found is None:
            raise BackendError("Setup did not complete; try again.")
        return found

    def _set_password(self, name: str, password: str) -> Account:
        try:
            digest = hash_password(password)
            with self._accounts() as accounts, accounts.transaction():
                if not self._user_exists(accounts, name):
                    raise NotFound(f"No user {name}.")
                accounts.add_user(name)
                return accounts.set_web_password(name, digest)
        except UsageError as exc:
            raise BackendError(str(exc)) from exc

    def change_password(self, account: Account, password: str) -> Account:
        return self._set_password(account.name, password)

    # -- data -----------------------------------------------------------------------------

    def _segment_names(self, user: str) -> list[str]:
        try:
            return self.root.segments(user)
        except UsageError:
            return []  # an account whose user has no folder (removed by hand)

    def segments(self, account: Account) -> list[SegmentRef]:
        return [
            SegmentRef(user, s)
            for user in [account.name, *self._granted_owners(account)]
            for s in self._segment_names(user)
            if (self.root.repo_path(user, s) / "HEAD").is_file()
        ]

    def repository(self, account: Account, user: str, segment: str) -> Repository:
        self._visible(account, user, segment)
        try:
            return Repository.open(self.root.repo_path(user, segment))
        except (RepositoryError, UsageError) as exc:
            raise NotFound("No such segment.") from exc

    def _scan(self, tree: Path) -> _Scan:
        now = time.time()
        with self._scan_lock:
            cached = self._scans.get(tree)
            if cached is not None and now - cached[0] < SCAN_CACHE:
                return cached[1]
        scan = _Scan(tree, now)
        with self._scan_lock:
            self._scans[tree] = (now, scan)
        return scan

    def last_login(self, user: str) -> datetime | None:
        """When one of `user`'s devices last logged in to the sync endpoint (DATA/logs/auth.log).

        Every sync logs in (rclone reuses a login for a few minutes), and so does a Pi
        pulling files; a login says a device reached the server, not which segment it synced.
        Each line is a JSON record (bluegrass.cloud.authclient.log_entry), read as such and
        never searched as text: a user name holds whatever a client sent. Lines that are not
        such records (the free-text format before decision 122) are skipped.
        """
        path = self.root.path / authproxy.LOG
        # A cheap filter before parsing: the record's own spelling of the name.
        wanted = json.dumps(user, ensure_ascii=True).encode()
        tail = b""
        try:
            with path.open("rb") as log:
                end = size = log.seek(0, os.SEEK_END)
                # Backwards from the end, a chunk at a time: the answer is usually near it.
                while end > 0 and size - end < AUTH_LOG_TAIL:
                    start = max(0, end - AUTH_LOG_CHUNK)
                    log.seek(start)
                    tail = log.read(end - start) + tail
                    end = start
                    lines = tail.split(b"\n")
                    # The first line may be cut by the chunk's start, unless the file starts.
                    complete = lines if end == 0 else lines[1:]
                    for line in reversed(complete):
                        found = _accepted_at(line, user, wanted)
                        if found is not None:
                            return found
                    tail = b"" if end == 0 else lines[0]
        except OSError:
            return None
        return None

    def _next_commit(self, accounts: Accounts, cfg: Config, ref: SegmentRef) -> str:
        clock = settings.commit_at(cfg, ref.user, ref.segment)
        now = datetime.now()
        due = last_occurrence(now, clock)
        if not accounts.done_for("commit", ref.user, ref.segment, due.strftime("%Y-%m-%dT%H:%M")):
            return f"commit, now (the one due {due:%Y-%m-%d %H:%M} has not run yet)"
        return f"commit, {due + timedelta(days=1):%Y-%m-%d %H:%M}"

    def _segment_status(self, accounts: Accounts, cfg: Config, ref: SegmentRef) -> SegmentStatus:
        status = SegmentStatus(ref.user, ref.segment)
        tree = self.root.files / ref.user / ref.segment
        live = tree.is_dir() and not tree.is_symlink()
        repo_path = self.root.repo_path(ref.user, ref.segment)
        recent: list[browse.HistoryItem] = []
        found = corruption.known_damage(self.root, ref.user, ref.segment)
        if found is not None:
            status.problems.append(Problem(Severity.ERROR, found.describe("The history")))
        if (repo_path / "HEAD").is_file():
            try:
                recent = recent_history(Repository.open(repo_path))
            except BluegrassError as exc:
                status.problems.append(Problem(Severity.ERROR, f"The history: {exc}"))
        if recent:
            status.last_commit = recent[0].date
        else:
            status.problems.append(Problem(Severity.INFO, "No snapshot yet."))
        status.problems += suspicious(recent)
        last = accounts.last_job("commit", ref.user, ref.segment)
        if last is not None and last.outcome == "error":
            status.problems.append(
                Problem(
                    Severity.ERROR, f"The last snapshot failed ({last.finished}): {last.detail}"
                )
            )
        if live:
            status.next_job = self._next_commit(accounts, cfg, ref)
            scan = self._scan(tree)
            for path, written in scan.stuck[:3]:
                when = datetime.fromtimestamp(written).astimezone()
                status.problems.append(
                    Problem(
                        Severity.WARNING,
                        f"An upload has stopped half-way: {path} was last written "
                        f"{when:%Y-%m-%d %H:%M}. The laptop's next sync normally finishes it; "
                        "the file's previous version stays in history meanwhile.",
                    )
                )
            if not scan.complete:
                status.problems.append(
                    Problem(
                        Severity.INFO,
                        f"Only the first {SCAN_LIMIT:,} entries were looked at for stopped "
                        "uploads.",
                    )
                )
            if len(scan.stuck) > 3:
                status.problems.append(
                    Problem(Severity.WARNING, f"… and {len(scan.stuck) - 3} more stopped uploads.")
                )
        else:
            status.problems.append(
                Problem(
                    Severity.INFO,
                    "The synced folder is gone from the server; its history is kept.",
                )
            )
        return status

    def dashboard(self, account: Account) -> Dashboard:
        board = Dashboard(jobs=list(JOBS))
        try:
            cfg = settings.load(self.root.path)
        except BluegrassError as exc:
            cfg = defaults(settings.SCHEMA)
            if account.admin:
                board.problems.append(Problem(Severity.ERROR, str(exc)))
        user = account.name
        last_sync = self.last_login(user)
        with self._accounts() as accounts:
            for segment in self._segment_names(user):
                status = self._segment_status(accounts, cfg, SegmentRef(user, segment))
                status.last_sync = last_sync
                board.segments.append(status)
            jobs = accounts.web_jobs(user, 5)
            stuck = stuck_commits(self.root, accounts, cfg)
            use = quota.status(accounts, self.root.path, user)
        board.storage = StorageUse(use.used, use.quota)
        if use.restriction == quota.READ_ONLY:
            text = (
                f"You use {use.text()}, and your files grew while over it (overwritten in "
                "place): your devices can only download until the administrator sets your "
                "quota again."
            )
            board.problems.append(Problem(Severity.ERROR, text))
        elif use.over:
            text = (
                f"You use {use.text()}: your devices can no longer add files, only download, "
                "delete and rename them. Delete what you no longer need, or ask the "
                "administrator for a bigger quota."
            )
            board.problems.append(Problem(Severity.WARNING, text))
        for item in stuck:
            if item.user == user:
                text = f"Snapshots of {item.name} are not being taken: {item.detail}"
                board.problems.append(Problem(Severity.ERROR, text))
        others = sorted(item.name for item in stuck if item.user != user)
        if account.admin and others:
            # Decision 40: another user's segment is only named, never opened, even here.
            text = f"Snapshots of other users' segments are not being taken: {', '.join(others)}."
            board.problems.append(Problem(Severity.ERROR, text))
        board.recent_jobs = [_job_status(webjobs.refresh(self.root, j)) for j in jobs]
        if (self.root.files / user).is_dir():
            for stray in self.root.strays(user):
                if stray.reason.startswith("not a valid"):
                    text = (
                        f"The folder {stray.name!r} in your synced space is not backed up: a "
                        "segment's name is lower-case letters, digits and '-'. Rename it."
                    )
                    board.problems.append(Problem(Severity.ERROR, text))
                else:
                    text = f"{stray.name!r} lies outside every segment, so it is not backed up."
                    board.problems.append(Problem(Severity.WARNING, text))
        board.problems += self._emergency_problems(account)
        endpoint = self._endpoint_state()
        if endpoint == "down":
            board.problems.append(
                Problem(Severity.ERROR, "The sync endpoint is down: devices cannot sync now.")
            )
        if account.admin:
            usage = shutil.disk_usage(self.root.path)
            used = 100 * (usage.total - usage.free) / usage.total
            board.health.append(
                HealthItem(
                    "Disk (data root)",
                    f"{used:.0f} % used, {human_size(usage.free)} free",
                    Severity.WARNING if used > 90 else Severity.OK,
                )
            )
            board.health.append(HealthItem("Sync endpoint", endpoint))
            self._replica(board, cfg)
        return board

    def _replica(self, board: Dashboard, cfg: Config) -> None:
        """The replica's card, and its failure among the problems (administrators only)."""
        state = replica_status.read(self.root.path, cfg)
        if state is None:
            return

        def when(text: str | None) -> datetime | None:
            return datetime.fromisoformat(text) if text else None

        board.replica = ReplicaState(
            when(state.last_complete),
            state.size,
            state.problem,
            when(state.failing_since),
            state.attempts,
        )
        if state.problem is not None:
            tries = "" if state.attempts < 2 else f" ({state.attempts} attempts)"
            text = f"The replica is not up to date: the last upload failed{tries}: {state.problem}"
            board.problems.append(Problem(Severity.ERROR, text))

    def _endpoint_state(self) -> str:
        try:
            state = json.loads((self.root.path / STATUS_FILE).read_text()).get("sync_endpoint")
        except (OSError, ValueError, AttributeError):
            return "unknown"
        return str(state)

    # -- emergency access (bluegrass.cloud.emergency) -------------------------------------

    def _emergency_problems(self, account: Account) -> list[Problem]:
        """The owner is told at once, at the top of the dashboard, while a request is open;
        a grantee, that they can read."""
        out = []
        with self._emergency() as store:
            store.refresh()
            for contact in store.trusted(account.name):
                req = store.open_request(account.name, contact.grantee)
                if req is None:
                    continue
                if req.state == "waiting":
                    when = _utc(req.grants_at)
                    text = (
                        f"{contact.grantee} asked for emergency access to your history on "
                        f"{_utc(req.requested):%Y-%m-%d %H:%M} UTC. Unless you refuse it on the "
                        f"Emergency access page, they can read all your segments from "
                        f"{when:%Y-%m-%d %H:%M} UTC."
                    )
                else:
                    text = (
                        f"{contact.grantee} can read your history (emergency access granted "
                        f"{_utc(req.grants_at):%Y-%m-%d %H:%M} UTC). End it on the Emergency "
                        "access page if you did not mean this."
                    )
                out.append(Problem(Severity.ERROR, text))
            for owner in store.granted_owners(account.name):
                text = f"You have read-only emergency access to {owner}'s history (Browse)."
                out.append(Problem(Severity.INFO, text))
        return out

    def emergency(self, account: Account) -> EmergencyPage:
        with self._emergency() as store:
            store.refresh()
            trusted = [
                TrustedPerson(
                    c.grantee,
                    c.wait_days,
                    _utc(c.added),
                    _request(store.latest(account.name, c.grantee)),
                )
                for c in store.trusted(account.name)
            ]
            trusted_by = [
                TrustedPerson(
                    c.owner, c.wait_days, _utc(c.added), _request(store.latest(c.owner, c.grantee))
                )
                for c in store.trusted_by(account.name)
            ]
            log = [
                EmergencyEvent(_utc(e.at), e.grantee, e.event, e.detail)
                for e in store.events(account.name)
            ]
        return EmergencyPage(trusted, trusted_by, log, MIN_DAYS, MAX_DAYS, DEFAULT_DAYS)

    def add_trusted(self, account: Account, name: str, wait_days: int) -> None:
        if name == account.name:
            raise BackendError("You cannot name yourself as your own trusted person.")
        if not names.is_valid(name):
            raise BackendError(
                f"There is no user {name!r} with a web login on this server: a trusted "
                "person needs their own account here."
            )
        try:
            with self._emergency() as store:
                store.add_trusted(account.name, name, wait_days)
        except UsageError as exc:
            raise BackendError(str(exc)) from exc

    def remove_trusted(self, account: Account, name: str) -> None:
        with self._emergency() as store:
            if not store.remove_trusted(account.name, name):
                raise NotFound("Not one of your trusted people.")

    def request_access(self, account: Account, owner: str) -> EmergencyRequest:
        if owner == account.name:
            raise BackendError("You cannot ask for emergency access to your own history.")
        try:
            with self._emergency() as store:
                found = store.request(owner, account.name)
        except UsageError as exc:
            raise NotFound(str(exc)) from exc
        req = _request(found)
        assert req is not None
        return req

    def end_access(self, account: Account, grantee: str) -> EmergencyRequest:
        with self._emergency() as store:
            found = _request(store.end(account.name, grantee))
        if found is None:
            raise NotFound("No open request from that person.")
        return found

    def note_access(self, account: Account, owner: str, session: str) -> None:
        if owner != account.name:
            with self._emergency() as store:
                store.note_access(owner, account.name, session)

    # -- jobs -----------------------------------------------------------------------------

    def start_job(
        self, account: Account, kind: str, user: str | None, segment: str | None
    ) -> JobStatus:
        if kind not in webjobs.KINDS:
            raise BackendError(f"Unknown job {kind!r}.")
        if user is None or segment is None:
            raise BackendError("Which segment?")
        self._own(account, user, segment)
        if segment not in self._segment_names(user):
            raise NotFound("No such segment.")
        if not (self.root.files / user / segment).is_dir():
            raise BackendError(f"{segment} has no synced folder on the server to snapshot.")
        try:
            return _job_status(webjobs.start(self.root, account.name, kind, user, segment))
        except BluegrassError as exc:
            raise BackendError(str(exc)) from exc

    def job(self, account: Account, job_id: str) -> JobStatus:
        found = webjobs.get(self.root, job_id) if len(job_id) <= 64 else None
        if found is None or found.owner != account.name:
            raise NotFound("No such job.")
        return _job_status(found)

    # -- restore --------------------------------------------------------------------------

    def restore_targets(self, account: Account) -> list[RestoreTarget]:
        return ["live"]

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
        self._own(account, user, segment)
        repo = self.repository(account, user, segment)
        if target != "live":
            raise BackendError("Here a restore goes into your synced folder.")
        path = restore_path(path)
        shown = shown_path(path)
        try:
            with self.root.user_lock(user, exclusive=False):
                snap = browse.resolve(repo, commit)
                if browse.index(repo, snap).entries.get(path) is None:
                    raise BackendError(f"{shown} is not in that snapshot.")
                before = self._snapshot_before_restore(user, segment, path)
                done = restore_live(self.root, repo, user, segment, snap.commit, path)
                after = self._snapshot_after_restore(user, segment, snap.date)
        except BackendError:
            raise
        except BluegrassError as exc:
            raise BackendError(str(exc)) from exc
        kept = (
            f"kept in a new snapshot ({str(before.snapshot.commit)[:12]})"
            if before.snapshot.committed
            else "already in history"
        )
        written = f"{done.files} file{'s' if done.files != 1 else ''} written"
        if done.removed:
            written += f", {done.removed} removed that the snapshot did not have"
        recorded = (
            "The history's newest snapshot shows it."
            if after
            else "The next daily snapshot records it."
        )
        return (
            f"Restored {shown} as of {snap.date.astimezone():%Y-%m-%d %H:%M} into your synced "
            f"folder ({written}); the version it replaced is {kept}. {recorded} Your devices "
            "get it at their next sync (the server shows them the change within 5 seconds)."
        )

    def _snapshot_after_restore(self, user: str, segment: str, when: datetime) -> bool:
        """Record the restored state too, so that browsing "now" shows what the folder holds
        and the restore is one step in the history. The restore is done either way."""
        reason = f"after restoring the version of {when.astimezone():%Y-%m-%d %H:%M}"
        try:
            commit_one(self.root, settings.load(self.root.path), user, segment, reason=reason)
        except BluegrassError:
            return False  # busy (the scheduler?): the next snapshot records it
        return True

    def _snapshot_before_restore(self, user: str, segment: str, path: bytes) -> SegmentCommit:
        """Snapshot the live tree (what `commit` does), so the restore can be undone."""
        try:
            before = commit_one(
                self.root, settings.load(self.root.path), user, segment, reason="before a restore"
            )
        except BluegrassError as exc:
            why = BUSY if is_busy(exc) else str(exc)
            raise BackendError(
                f"Nothing was restored: the snapshot before it failed: {why}"
            ) from exc
        # A file that could not be read is in history only in its previous version: replacing
        # it now would lose the current one.
        doubtful = [shown for shown, _ in before.snapshot.unreadable] + list(
            before.snapshot.unstable
        )
        for shown in doubtful:
            if _under(os.fsencode(shown), path):
                raise BackendError(
                    f"Nothing was restored: {shown} could not be read reliably, so its current "
                    "version is not safely in history."
                )
        return before

    # -- administration -------------------------------------------------------------------

    def users(self, account: Account) -> list[UserInfo]:
        require_admin(account)
        with self._accounts() as accounts:
            web = {a.name: a for a in accounts.web_accounts()}
            every = sorted(set(self.root.users()) | set(accounts.users()))
            devices = accounts.devices()
            use = quota.statuses(accounts, self.root.path, every)
        out = []
        for name in every:
            login = web.get(name)
            out.append(
                UserInfo(
                    name,
                    bool(login and login.admin),
                    self._segment_names(name),
                    [
                        DeviceInfo(
                            d.id,
                            d.name,
                            datetime.fromisoformat(d.created),
                            datetime.fromisoformat(d.revoked) if d.revoked else None,
                        )
                        for d in devices
                        if d.user == name
                    ],
                    StorageUse(use[name].used, use[name].quota),
                )
            )
        return out

    def add_user(self, account: Account, name: str, password: str, admin: bool) -> None:
        require_admin(account)
        try:
            digest = hash_password(password)
            create_user(
                self.root,
                name,
                device_name=None,
                within=lambda accounts: accounts.set_web_password(name, digest, admin=admin),
            )
        except UsageError as exc:
            raise BackendError(str(exc)[:1].upper() + str(exc)[1:] + ".") from exc

    def reset_password(self, account: Account, name: str, password: str) -> None:
        require_admin(account)
        self._set_password(name, password)

    def revoke_device(self, account: Account, name: str, device: str) -> None:
        require_admin(account)
        with self._accounts() as accounts:
            if not accounts.has_user(name):
                raise NotFound("No such device.")
            try:
                accounts.revoke(name, device)
            except UsageError as exc:
                raise NotFound("No such device.") from exc

    def new_enrollment_code(self, account: Account, name: str, device_name: str) -> str:
        require_admin(account)
        with self._accounts() as accounts:
            if not self._user_exists(accounts, name) or not (self.root.files / name).is_dir():
                raise NotFound(f"No user {name}.")
        try:
            code = add_device(self.root, name, device_name).code
        except UsageError as exc:
            raise BackendError(str(exc)) from exc
        return code

    # -- the printed recovery kit ---------------------------------------------------------

    def _kit_problem(self) -> str | None:
        """Why no kit can be made here, in words for the person asking; None if one can."""
        try:
            cfg = settings.load(self.root.path)
        except BluegrassError as exc:
            return f"The kit cannot be made now: {exc}"
        if not settings.replica_enabled(cfg):
            return (
                "This server keeps no encrypted copy in a storage bucket, so there is no kit "
                "to print yet. Ask the server's administrator to set up a replica."
            )
        return None

    def kit_state(self, account: Account) -> KitState:
        problem = self._kit_problem()
        if problem is not None:
            return KitState(False, note=problem)
        try:
            current = kit.secrets_fingerprint(self.root.path, account.name)
        except BluegrassError as exc:
            return KitState(False, note=f"The kit cannot be made now: {exc}")
        last = printed.read(self.root.path, account.name)
        if last is None:
            return KitState(True)
        return KitState(True, last.at.astimezone(), last.fingerprint != current)

    def recovery_kit(self, account: Account) -> bytes:
        problem = self._kit_problem()
        if problem is not None:
            raise BackendError(problem)
        try:
            # The fingerprint first: if a secret changed between the two, the record says
            # the older one and the page asks for a new kit, never the other way round.
            fingerprint = kit.secrets_fingerprint(self.root.path, account.name)
            pdf = kit.user_kit_pdf(self.root.path, account.name)
        except BluegrassError as exc:
            raise BackendError(f"The kit cannot be made now: {exc}") from exc
        printed.record(self.root.path, account.name, fingerprint)
        return pdf


def _utc(stamp: float) -> datetime:
    return datetime.fromtimestamp(stamp, UTC)


def _request(req: emergency.Request | None) -> EmergencyRequest | None:
    if req is None:
        return None
    return EmergencyRequest(
        req.id,
        req.owner,
        req.grantee,
        _utc(req.requested),
        req.wait_days,
        req.state,  # type: ignore[arg-type]
        _utc(req.closed) if req.closed is not None else None,
    )


def _under(candidate: bytes, path: bytes) -> bool:
    return path == ROOT or candidate == path or candidate.startswith(path + b"/")


def create_panel(data_root: Path) -> Flask:
    """The panel app in cloud mode over `data_root`, with [web] from the configuration."""
    from bluegrass.panel import PanelConfig, create_app

    root = DataRoot(data_root)
    cfg = settings.load(root.path)
    return create_app(
        PanelConfig(
            backend=CloudBackend(root),
            secret_key=secret_key(root.path),
            mode="cloud",
            secure_cookies=cfg.get("web.secure_cookies"),
            trust_proxy=cfg.get("web.trust_proxy"),
        )
    )
