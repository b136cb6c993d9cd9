"""The Pi's web panel: bluegrass.panel in "pi" mode over this appliance's state and drive.

PiBackend implements bluegrass.panel.backend.Backend and Drive (docs/panel.md; devices are the
cloud's, so it is no DeviceAdmin):

- accounts: the panel's sign-ins live in STATE/state.sqlite (web_accounts, argon2id, see
  bluegrass.appliance.webaccounts); every account administers the whole appliance and sees
  every segment on the drive. The first-run setup takes the Pi's one-time setup code
  (bluegrass.appliance.setupcode) and can enroll an appliance that is not enrolled yet,
  through the same code as `bluegrass-appliance enroll`;
- data: every mirror on the drive, DRIVE/bluegrass/USER/SEGMENT.git, opened read-only as a
  bluegrass.core.store Repository; the drive is where the daemon says it is ready;
- the dashboard: what the daemon publishes (drive, cloud, next jobs, per-segment results,
  alerts) and health measured now (psutil);
- jobs and eject: asked of the daemon through the `requests` table, never done here: the
  daemon runs a job in its worker like a scheduled one (its state and progress in the jobs
  table, which the panel polls) and ejects with the job lock held;
- restore: core's restore from the mirror into a new folder DRIVE/restored/NAME.

`create_app_from_env()` is gunicorn's entry point (bluegrass.appliance.panelserver starts it).
"""

from __future__ import annotations

import os
import re
import stat
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
from bluegrass.appliance import drive, health, settings, setupcode, webaccounts
from bluegrass.appliance.context import Appliance as App
from bluegrass.appliance.enroll import enroll
from bluegrass.appliance.mirror import mirror_path
from bluegrass.appliance.panelserver import DRIVE_DIR_ENV, secret_key
from bluegrass.appliance.state import Alert
from bluegrass.core import enrollment, names
from bluegrass.core.errors import BluegrassError, UsageError
from bluegrass.core.store import Repository, RepositoryError, restore
from bluegrass.panel.accounts import SignIns, WebAccounts
from bluegrass.panel.backend import (
    Account,
    BackendError,
    Dashboard,
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
    human_size,
    recent_history,
    require_admin,
    restore_folder,
    restore_path,
    shown_path,
    suspicious,
    utc,
)

if TYPE_CHECKING:
    from flask import Flask

RESTORED = "restored"  # DRIVE/restored/NAME: where the panel restores to
EJECT_TIMEOUT = 60.0  # flushing a drive full of fresh writes takes a while
RECENT_JOBS = 5

JOB_LABELS = {"mirror": "Mirror now", "files": "Pull the latest files now"}
ALERT_SEVERITY = {
    "rewrite": Severity.ERROR,
    "bad-objects": Severity.ERROR,
    "cloud-damaged": Severity.ERROR,
    "cloud-refused": Severity.ERROR,
    "drive-full": Severity.ERROR,
    "segment-gone": Severity.WARNING,
    "drive-low": Severity.WARNING,
    "hot": Severity.WARNING,
}


def _local(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp))


def _unprefixed(message: str, key: str) -> str:
    """A segment's message without its "user/segment: " (shown on the segment's own row)."""
    return message.removeprefix(f"{key}: ")


class PiBackend(SignIns):
    mode: Mode = "pi"

    def __init__(self, app: App) -> None:
        self.app = app
        self.state = app.state
        self.web_accounts = self.state.web_accounts  # the store SignIns works on

    # -- first run and accounts -----------------------------------------------------------

    def setup_code_required(self) -> bool:
        # Reaching the home network is not owning the Pi (decision 110): whoever sets up the
        # panel reads every mirrored file, so setup takes a code read off the Pi itself.
        return True

    def check_setup_code(self, code: str) -> bool:
        return setupcode.matches(self.app, code)

    def complete_setup(self, name: str, password: str, enrollment_code: str | None) -> Account:
        if enrollment_code is not None and os.path.lexists(self.app.paths.enrollment):
            # The enrollment says whose files this Pi keeps; changing it takes root on the Pi.
            raise BackendError(
                "This appliance is enrolled already; leave the enrollment code empty. To "
                "enroll it again, run `bluegrass-appliance enroll CODE` on the Pi itself."
            )
        try:
            webaccounts.check_name(name)
            digest = webaccounts.hash_password(password)
            if enrollment_code is not None:
                enrollment.decode(enrollment_code)  # checked before anything is written
        except BluegrassError as exc:
            raise BackendError(f"{str(exc)[:1].upper()}{str(exc)[1:]}.") from exc
        with self.state.transaction() as db:
            # Inside one write transaction: two setups racing cannot both win, and an
            # enrollment that cannot be saved leaves no account behind.
            if WebAccounts(db).has_admin():
                raise BackendError("Setup is already done; sign in instead.")
            webaccounts.set_password(db, name, digest, admin=True)
            if enrollment_code is not None:
                try:
                    enroll(self.app, enrollment_code)
                except (BluegrassError, OSError) as exc:
                    raise BackendError(f"The enrollment could not be saved: {exc}") from exc
        setupcode.finish(self.app)  # it worked once; never again
        found = self.account(name)
        if found is None:
            raise BackendError("Setup did not complete; try again.")
        return found

    def _set_password(self, name: str, password: str, *, must_exist: bool) -> Account:
        try:
            digest = webaccounts.hash_password(password)
        except UsageError as exc:
            raise BackendError(str(exc)) from exc
        with self.state.transaction() as db:
            exists = WebAccounts(db).get(name) is not None
            if must_exist and not exists:
                raise NotFound(f"No account {name}.")
            if not must_exist and exists:
                raise BackendError(f"The account {name} exists already.")
            webaccounts.set_password(db, name, digest, admin=True if not exists else None)
        found = self.account(name)
        assert found is not None
        return found

    def change_password(self, account: Account, password: str) -> Account:
        return self._set_password(account.name, password, must_exist=True)

    # -- the daemon's view ----------------------------------------------------------------

    def _daemon(self) -> dict[str, Any]:
        """The daemon's published view, with "alive" checked against its process."""
        found = self.state.get("daemon") or {}
        pid = found.get("pid")
        alive = bool(found.get("state") == "running" and pid and psutil.pid_exists(pid))
        return {**found, "alive": alive}

    def _drive_root(self) -> Path | None:
        """The drive's root when jobs can use it (a ready drive, still mounted), else None."""
        if self.app.drive_dir is not None:
            return self.app.drive_dir if self.app.drive_dir.is_dir() else None
        view = self.state.get("drive") or {}
        if view.get("state") != "ready" or not view.get("root"):
            return None
        root = Path(view["root"])
        return root if drive.mount_at(root) is not None else None

    # -- data -----------------------------------------------------------------------------

    def _mirrors(self) -> list[SegmentRef]:
        root = self._drive_root()
        found: list[SegmentRef] = []
        folder = root / "bluegrass" if root else None
        if folder is None or not folder.is_dir():
            return found
        for user in sorted(folder.iterdir()):
            if not names.is_valid(user.name) or not user.is_dir():
                continue
            for repo in sorted(user.glob("*.git")):
                name = repo.name[: -len(".git")]
                if names.is_valid(name) and (repo / "HEAD").is_file():
                    found.append(SegmentRef(user.name, name))
        return found

    def segments(self, account: Account) -> list[SegmentRef]:
        # The Pi has administrators only, each of whom sees every user's copy on the drive.
        return self._mirrors()

    def repository(self, account: Account, user: str, segment: str) -> Repository:
        if not names.is_valid(user) or not names.is_valid(segment):
            raise NotFound("No such segment.")
        root = self._drive_root()
        if root is None:
            raise NotFound("The backup drive is not ready.")
        try:
            return Repository.open(mirror_path(root, user, segment))
        except RepositoryError as exc:
            raise NotFound("No such segment on the drive.") from exc

    def dashboard(self, account: Account) -> Dashboard:
        daemon = self._daemon()
        drive_view = self.state.get("drive") or {}
        alerts = self.state.alerts()
        results = {(r["user"], r["segment"], r["kind"]): r for r in self.state.segment_results()}
        on_drive = set(self._mirrors())
        listed = on_drive | {SegmentRef(u, s) for u, s, _ in results}
        next_job = self._next_job(daemon, drive_view)
        board = Dashboard(jobs=self._jobs_offered())
        shown: set[str] = set()
        for ref in sorted(listed):
            key = f"{ref.user}/{ref.segment}"
            status = SegmentStatus(ref.user, ref.segment, next_job=next_job)
            mirrored = results.get((ref.user, ref.segment, "mirror"))
            pulled = results.get((ref.user, ref.segment, "files"))
            mine = [a for a in alerts if a.subject == key]
            alerted = {a.message for a in mine}
            if mirrored:
                status.last_mirror = utc(mirrored.get("last_ok_ts"))
                if not mirrored["ok"] and mirrored["message"] not in alerted:
                    why = _unprefixed(str(mirrored["message"]), key)
                    status.problems.append(
                        Problem(Severity.ERROR, f"The last mirror failed: {why}")
                    )
            if pulled and not pulled["ok"]:
                why = _unprefixed(str(pulled["message"]), key)
                status.problems.append(
                    Problem(Severity.WARNING, f"The last pull of the latest files failed: {why}")
                )
            if ref in on_drive:
                self._history(ref, status)
            elif self._drive_root() is not None:
                status.problems.append(Problem(Severity.INFO, "Not on this drive yet."))
            for alert in mine:
                status.problems.append(self._alert_problem(alert, key))
                shown.add(str(alert.id))
            board.segments.append(status)
        board.problems = self._system_problems(daemon, drive_view)
        board.problems += [self._alert_problem(a) for a in alerts if str(a.id) not in shown]
        board.drive = self._drive_status(daemon, drive_view)
        board.health = self._health()
        board.recent_jobs = self._recent_jobs(daemon)
        return board

    def _history(self, ref: SegmentRef, status: SegmentStatus) -> None:
        """Last snapshot seen on the drive, and suspicious recent ones."""
        try:
            repo = self.repository(_NOBODY, ref.user, ref.segment)
            recent = recent_history(repo)
        except (BackendError, BluegrassError) as exc:
            status.problems.append(Problem(Severity.ERROR, f"The mirror cannot be read: {exc}"))
            return
        if not recent:
            status.problems.append(Problem(Severity.INFO, "No snapshot yet."))
            return
        status.last_commit = recent[0].date
        status.problems += suspicious(recent)

    @staticmethod
    def _alert_problem(alert: Alert, segment: str | None = None) -> Problem:
        times = f", {alert.count} times" if alert.count > 1 else ""
        text = _unprefixed(alert.message, segment) if segment else alert.message
        return Problem(
            ALERT_SEVERITY.get(alert.kind, Severity.WARNING),
            f"{text[:1].upper()}{text[1:]} (since {_local(alert.first_seen)}{times}; "
            f"alert #{alert.id}, cleared with `bluegrass-appliance alerts --ack {alert.id}`)",
        )

    def _next_job(self, daemon: dict[str, Any], drive_view: dict[str, Any]) -> str | None:
        if not daemon["alive"]:
            return None
        cloud = self.state.get("cloud") or {}
        if cloud.get("state") == "not-enrolled":
            return "waiting for enrollment"
        if daemon.get("running"):
            return f"{daemon['running']}, running now"
        if self.app.drive_dir is None and drive_view.get("state") != "ready":
            return "when the drive is back"
        upcoming = sorted(
            (when, kind) for kind, when in (daemon.get("next") or {}).items() if when is not None
        )
        if not upcoming:
            return None
        when, kind = upcoming[0]
        return f"{kind}, {'now' if when <= time.time() else _local(when)}"

    def _system_problems(self, daemon: dict[str, Any], view: dict[str, Any]) -> list[Problem]:
        found: list[Problem] = []
        if not daemon["alive"]:
            found.append(
                Problem(
                    Severity.ERROR,
                    "The appliance's daemon is not running: nothing is being mirrored.",
                )
            )
        cloud = self.state.get("cloud") or {}
        since = cloud.get("since")
        if cloud.get("state") == "not-enrolled":
            found.append(
                Problem(
                    Severity.ERROR,
                    "This appliance is not enrolled with a cloud yet: run `bluegrass-appliance "
                    "enroll CODE` with the code `bluegrass-cloud device add` printed.",
                )
            )
        elif cloud.get("state") == "unreachable" and since:
            upcoming = f"; next try {_local(cloud['next_try'])}" if cloud.get("next_try") else ""
            found.append(
                Problem(
                    Severity.WARNING,
                    f"The cloud is unreachable since {_local(since)} ({cloud.get('attempts', 0)} "
                    f"tries{upcoming}): {cloud.get('message', '')}",
                )
            )
        elif cloud.get("state") == "refused" and since:
            found.append(
                Problem(
                    Severity.ERROR,
                    f"The cloud refuses this appliance since {_local(since)}: "
                    f"{cloud.get('message', '')}",
                )
            )
        if self.app.drive_dir is not None:
            if not self.app.drive_dir.is_dir():
                found.append(
                    Problem(Severity.ERROR, f"The drive folder {self.app.drive_dir} is gone.")
                )
            return found
        state, since = view.get("state"), view.get("since")
        when = _local(since) if since else "?"
        message = view.get("message", "")
        if state == "missing":
            found.append(
                Problem(Severity.ERROR, f"The backup drive is missing since {when}: {message}")
            )
        elif state == "absent":
            found.append(Problem(Severity.ERROR, "No backup drive is plugged in."))
        elif state == "unusable":
            found.append(Problem(Severity.ERROR, f"The drive cannot be used: {message}"))
        elif state == "ejected":
            found.append(
                Problem(
                    Severity.INFO,
                    f"The drive was ejected at {when}: it is safe to unplug; plug it in again "
                    "to go on backing up.",
                )
            )
        return found

    def _drive_status(self, daemon: dict[str, Any], view: dict[str, Any]) -> DriveStatus:
        root = self._drive_root()
        space: dict[str, Any] | None = health.disk(root) if root else None
        free = int(space["free"]) if space else None
        total = int(space["total"]) if space else None
        if self.app.drive_dir is not None:
            marker = drive.read_marker(root) if root else None
            label = f"a folder, {self.app.drive_dir}" + (f" ({marker.id})" if marker else "")
            return DriveStatus(root is not None, root is not None, label, free, total, False)
        state = view.get("state")
        parts = [str(p) for p in (view.get("id"), view.get("device")) if p]
        return DriveStatus(
            present=state in ("ready", "ejected", "unusable"),
            mounted=root is not None,
            label=", ".join(parts) or None,
            free_bytes=free,
            total_bytes=total,
            can_eject=root is not None and bool(daemon["alive"]),
        )

    def _health(self) -> list[HealthItem]:
        root = self._drive_root()
        found: dict[str, Any] = health.snapshot(root)
        items = []
        low = float(self.app.config.get("drive.low_space_percent"))
        space = found.get("drive")
        if isinstance(space, dict):
            free_share = float(space["free_percent"])
            severity = (
                Severity.ERROR
                if free_share < low
                else Severity.WARNING
                if free_share < 2 * low
                else Severity.OK
            )
            items.append(
                HealthItem(
                    "Drive",
                    f"{100 - free_share:.0f} % used, {human_size(space['free'])} free",
                    severity,
                )
            )
        system: dict[str, Any] | None = health.disk(self.app.paths.state)
        if system:
            share = float(system["free_percent"])
            items.append(
                HealthItem(
                    "System disk",
                    f"{100 - share:.0f} % used, {human_size(system['free'])} free",
                    Severity.WARNING if share < 10 else Severity.OK,
                )
            )
        memory = found["memory"]
        assert isinstance(memory, dict)
        available = float(memory["available_percent"])
        items.append(
            HealthItem(
                "Memory",
                f"{100 - available:.0f} % used, {human_size(memory['available'])} available",
                Severity.WARNING if available < 10 else Severity.OK,
            )
        )
        load = found["load"]
        cpus = int(found["cpus"])
        assert isinstance(load, list)
        items.append(
            HealthItem(
                "Load",
                " ".join(f"{x:.2f}" for x in load) + f" ({cpus} CPUs)",
                Severity.WARNING if load[1] > 2 * cpus else Severity.OK,
            )
        )
        temperature = found.get("cpu_temperature")
        if isinstance(temperature, float):
            hot = float(self.app.config.get("health.max_temperature"))
            severity = (
                Severity.ERROR
                if temperature > hot
                else Severity.WARNING
                if temperature > hot - 10
                else Severity.OK
            )
            items.append(HealthItem("Temperature", f"{temperature:.1f} °C", severity))
        return items

    # -- jobs -----------------------------------------------------------------------------

    def _jobs_offered(self) -> list[JobKind]:
        kinds = ["mirror", "files"] if self.app.config.get("files.enabled") else ["mirror"]
        return [JobKind(k, JOB_LABELS[k]) for k in kinds]

    def start_job(
        self, account: Account, kind: str, user: str | None, segment: str | None
    ) -> JobStatus:
        if kind not in {j.kind for j in self._jobs_offered()}:
            raise BackendError(f"Unknown job {kind!r}.")
        if not self._daemon()["alive"]:
            raise BackendError(
                "The appliance's daemon is not running, so no job can start; start it "
                "(`systemctl start bluegrass-appliance`)."
            )
        request = self.state.request(kind, account.name)
        return self.job(account, f"r{request}")

    def job(self, account: Account, job_id: str) -> JobStatus:
        found = re.fullmatch(r"([rj])([0-9]{1,18})", job_id)
        if found is None:
            raise NotFound("No such job.")
        number = int(found.group(2))
        if found.group(1) == "r":
            request = self.state.get_request(number)
            if request is None or request["kind"] not in JOB_LABELS:
                raise NotFound("No such job.")
            return self._request_status(request, self._daemon())
        job = self.state.job(number)
        if job is None:
            raise NotFound("No such job.")
        return self._job_status(job, f"j{number}", f"{str(job['kind']).capitalize()} job")

    @staticmethod
    def _job_status(job: dict[str, Any], ident: str, label: str) -> JobStatus:
        outcome = job["outcome"]
        if outcome is None:
            return JobStatus(
                id=ident,
                kind=str(job["kind"]),
                label=label,
                state="running",
                progress=job["progress"],
                message=str(job["progress_message"] or "Starting…"),
                started=utc(job["started_ts"]),
            )
        message = str(job["message"] or outcome)
        return JobStatus(
            id=ident,
            kind=str(job["kind"]),
            label=label,
            state="done" if outcome == "ok" else "failed",
            progress=1.0 if outcome == "ok" else job["progress"],
            message=message[:1].upper() + message[1:],
            started=utc(job["started_ts"]),
            finished=utc(job["finished_ts"]),
        )

    def _request_status(self, request: dict[str, Any], daemon: dict[str, Any]) -> JobStatus:
        ident, kind = f"r{request['id']}", str(request["kind"])
        label = JOB_LABELS.get(kind, kind)
        job = self.state.job(int(request["job"])) if request["job"] is not None else None
        if job is not None and (job["outcome"] is None or request["finished"] is None):
            return self._job_status(job, ident, label)
        if request["finished"] is not None:
            ok = bool(request["ok"])
            return JobStatus(
                id=ident,
                kind=kind,
                label=label,
                state="done" if ok else "failed",
                progress=1.0 if ok else None,
                message=str(request["message"] or ""),
                started=utc(job["started_ts"] if job else request["requested"]),
                finished=utc(request["finished"]),
            )
        if not daemon["alive"]:
            message = "The appliance's daemon is not running; it starts this when it runs again."
        elif daemon.get("running"):
            message = f"Waiting for the {daemon['running']} job under way to finish."
        else:
            message = "Starting…"
        return JobStatus(
            id=ident,
            kind=kind,
            label=label,
            state="queued",
            progress=None,
            message=message,
            started=utc(request["requested"]),
        )

    def _recent_jobs(self, daemon: dict[str, Any]) -> list[JobStatus]:
        requests = [r for r in self.state.recent_requests(RECENT_JOBS) if r["kind"] in JOB_LABELS]
        by_job = {int(r["job"]): r for r in requests if r["job"] is not None}
        items = [self._request_status(r, daemon) for r in requests]
        for job in self.state.jobs(limit=RECENT_JOBS):
            if job["id"] not in by_job:
                origin = "scheduled" if job["origin"] == "daemon" else str(job["origin"])
                label = f"{str(job['kind']).capitalize()} ({origin})"
                items.append(self._job_status(job, f"j{job['id']}", label))
        epoch = datetime.fromtimestamp(0, UTC)
        items.sort(key=lambda j: j.started or epoch, reverse=True)
        return items[:RECENT_JOBS]

    def eject_drive(self, account: Account) -> str:
        if self.app.drive_dir is not None:
            raise BackendError("The drive is a plain folder here (--drive-dir): nothing to eject.")
        if not self._daemon()["alive"]:
            raise BackendError("The appliance's daemon is not running: it is the one that ejects.")
        request = self.state.request("eject", account.name)
        deadline = time.monotonic() + EJECT_TIMEOUT
        while time.monotonic() < deadline:
            found = self.state.get_request(request)
            if found is not None and found["finished"] is not None:
                if found["ok"]:
                    return str(found["message"])
                raise BackendError(str(found["message"]))
            # The daemon answers within its one-second loop; this is the wait for that answer.
            time.sleep(0.1)
        raise BackendError("The appliance did not answer in time; look at the dashboard again.")

    # -- restore --------------------------------------------------------------------------

    def restore_targets(self, account: Account) -> list[RestoreTarget]:
        return ["drive"]

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
        if target != "drive":
            raise BackendError("On the Pi, restores go into a new folder on the drive.")
        folder = restore_folder(folder)
        root = self._drive_root()
        if root is None:
            raise BackendError("The backup drive is not ready; nothing was restored.")
        base = root / RESTORED
        shown = shown_path(path)
        try:
            base.mkdir(exist_ok=True)
            if not stat.S_ISDIR(os.lstat(base).st_mode):
                raise BackendError(f"{RESTORED} on the drive is not a folder; nothing restored.")
            dest = base / folder
            if os.path.lexists(dest):
                raise BackendError(f"The folder {RESTORED}/{folder} exists on the drive already.")
            result = restore(repo, dest, at=commit, path=os.fsdecode(path))
        except BackendError:
            raise
        except BluegrassError as exc:
            raise BackendError(str(exc)) from exc
        except OSError as exc:
            raise BackendError(f"Writing to the drive failed: {exc.strerror}") from exc
        return (
            f"Restored {shown} as of snapshot {result.commit[:12]} into {RESTORED}/{folder} on "
            f"the drive: {result.files} files, {human_size(result.bytes)}."
        )

    # -- administration: every account is an administrator of this appliance --------------

    def users(self, account: Account) -> list[UserInfo]:
        require_admin(account)
        with self.web_accounts() as store:
            return [UserInfo(a.name, a.admin) for a in store.all()]

    def add_user(self, account: Account, name: str, password: str, admin: bool) -> None:
        require_admin(account)
        if not names.is_valid(name):
            raise BackendError("Not a valid name.")
        self._set_password(name, password, must_exist=False)

    def reset_password(self, account: Account, name: str, password: str) -> None:
        require_admin(account)
        if not names.is_valid(name):
            raise NotFound(f"No account {name}.")
        self._set_password(name, password, must_exist=True)


# Reading the drive for the dashboard is not an account's request: visibility does not apply.
_NOBODY = Account("", True, "")


def create_app_from_env() -> Flask:
    """gunicorn's entry point: `bluegrass.appliance.panelbackend:create_app_from_env()`.

    STATE from $BLUEGRASS_APPLIANCE_STATE, the folder standing in for the drive (if any) from
    $BLUEGRASS_APPLIANCE_DRIVE_DIR; both are set by `bluegrass-appliance run`."""
    from bluegrass.panel import PanelConfig, create_app

    paths = settings.Paths.resolve(None)
    app = App(paths, settings.load(paths), os.environ.get(DRIVE_DIR_ENV) or None)
    backend = PiBackend(app)
    return create_app(PanelConfig(backend=backend, secret_key=secret_key(paths)))
