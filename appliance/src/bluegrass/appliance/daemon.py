"""`bluegrass-appliance run`: the daemon.

One main thread owns all decisions (drive, schedule, back-off); a worker thread runs at most
one job at a time; pyudev's observer thread only forwards block-device events. Everything the
daemon knows is published to SQLite for `status` and the panel.

Drive states: absent (none seen), ready (mounted, marker checked), missing (was ready and
vanished: unplugged, I/O errors), unusable (found but cannot be used: says why), ejected
(unmounted by `drive eject`, safe to unplug; not remounted until it has gone away).

The web panel (bluegrass.appliance.panelserver) runs as a supervised child process. It never
touches the drive's mount or runs jobs itself: it asks, through the `requests` table, and the
main thread answers (a job in the worker, like a scheduled one; an eject with the job lock).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType

import pyudev
from bluegrass.appliance import drive, health, jobs, notifications, setupcode
from bluegrass.appliance.context import Appliance, JobBusy, job_lock
from bluegrass.appliance.eject import eject
from bluegrass.appliance.errors import DriveMissing
from bluegrass.appliance.panelserver import PanelServer, url
from bluegrass.appliance.runner import Runner
from bluegrass.core.errors import BluegrassError
from bluegrass.core.notify import Ping

log = logging.getLogger("bluegrass.appliance")

# The longest the main loop sleeps: a SIGTERM is acted on within this.
MAX_WAIT = 1.0
# Quick re-tries of a drive that failed to mount, before waiting for the next regular check.
ATTACH_RETRIES = 5


@dataclass
class DriveView:
    state: str = "absent"
    since: float = field(default_factory=time.time)
    message: str = ""
    device: str | None = None
    devnum: tuple[int, int] | None = None
    uuid: str | None = None
    id: str | None = None
    root: str | None = None
    found_by: str | None = None
    mounted_by_us: bool = False


@dataclass
class CloudView:
    state: str = "unknown"  # unknown | ok | unreachable | refused | not-enrolled
    since: float | None = None
    attempts: int = 0
    next_try: float = 0.0
    message: str = ""


class Daemon:
    def __init__(self, app: Appliance, panel: PanelServer | None = None) -> None:
        self.app = app
        self.panel = panel
        self.state = app.state
        self.events: queue.Queue[tuple[str, object]] = queue.Queue()
        self.stopping = False
        self.worker: threading.Thread | None = None
        self.runner: Runner | None = None
        self.running_kind: str | None = None
        self.next_due = {"mirror": 0.0, "files": 0.0 if app.config.get("files.enabled") else -1}
        self.drive = DriveView()
        self.cloud = CloudView()
        self.next_drive_check = 0.0
        self.next_health = 0.0
        self.observer: pyudev.MonitorObserver | None = None
        self.monitor_source = "none"
        self.started = time.time()
        self.attach_failures = 0
        # [notify]: each job pings its URL (mirror: ping_url, files: [notify.pings] files)
        self.notifier = notifications.notifier(app.paths.state, app.config, log.info, echo=True)
        self.ping: Ping | None = None

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        # What a previous run left open (killed outright, power cut) ended with it.
        if self.state.interrupted_jobs("stopped: the daemon ended while it ran"):
            log.info("marked the jobs of the previous run that never finished as cancelled")
        self.state.abandon_requests("The appliance restarted before doing this; ask again.")
        if self.panel is not None:
            self.panel.start_first()  # a panel that cannot start fails `run` here, exit 1
            self._announce_setup(self.panel)
        if self.app.drive_dir:
            self._attach_dir()
        else:
            self._start_monitor()
            self._scan("start-up scan")
        # Published once the monitor listens: from here on a plugged-in drive is seen.
        self.publish()
        while not self.stopping:
            self._tick(time.time())
            wait = min(MAX_WAIT, max(0.0, self._next_wakeup() - time.time()))
            try:
                kind, payload = self.events.get(timeout=wait)
            except queue.Empty:
                continue
            self._handle(kind, payload)
        self._shutdown()
        return 0

    def _announce_setup(self, panel: PanelServer) -> None:
        """While the panel has no administrator, make its setup code and show it where only
        the owner looks: this log (the journal) and the login console (decision 110)."""
        try:
            found = setupcode.current(self.app)
            if found is None:
                return
            address = url(panel.bind, panel.port)
            log.info(
                "panel: no administrator yet; open %ssetup and type the setup code %s "
                "(`bluegrass-appliance setup-code` prints it again)",
                address,
                found.code,
            )
            setupcode.announce(self.app, found, address)
        except BluegrassError as exc:
            # The code is still in the state folder (`setup-code`); the daemon's work goes on.
            log.warning("panel: %s", exc)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only flags: the main loop notices within MAX_WAIT and shuts down in order.
        self.stopping = True
        if self.panel is not None:
            self.panel.stop_event.set()

    def _next_wakeup(self) -> float:
        times = [self.next_drive_check, self.next_health]
        # Not enrolled: due jobs wait, and the enrollment is looked for every MAX_WAIT.
        if (
            self.worker is None
            and self.drive.state == "ready"
            and self.cloud.state != "not-enrolled"
        ):
            due = [t for t in self.next_due.values() if t >= 0]
            if due:
                times.append(max(min(due), self.cloud.next_try))
        return min(times)

    def _handle(self, kind: str, payload: object) -> None:
        if kind == "udev":
            assert isinstance(payload, pyudev.Device)
            self._on_udev(payload)
        elif kind == "job-done":
            assert isinstance(payload, jobs.Outcome)
            self._on_job_done(payload)
        self.publish()

    def _tick(self, now: float) -> None:
        changed = False
        if now >= self.next_drive_check:
            self.next_drive_check = now + self.app.seconds("schedule.drive_check_every")
            self._check_drive()
            changed = True
        if now >= self.next_health:
            self.next_health = now + self.app.seconds("schedule.health_every")
            self._record_health()
            changed = True
        if self._take_requests():
            changed = True
        if self._maybe_start_job(now):
            changed = True
        if changed:
            self.publish()
        self.notifier.flush()  # what a receiver did not take is tried again

    # -- drive ------------------------------------------------------------------------------

    def _start_monitor(self) -> None:
        context = pyudev.Context()
        # udevd's events carry its database (labels, ids) and come after its rules ran; without
        # udevd (a bare container) the kernel's own events still say when a device changes.
        self.monitor_source = "udev" if Path("/run/udev/control").exists() else "kernel"
        monitor = pyudev.Monitor.from_netlink(context, source=self.monitor_source)
        monitor.filter_by("block")
        self.observer = pyudev.MonitorObserver(
            monitor, callback=lambda device: self.events.put(("udev", device)), name="udev"
        )
        self.observer.start()
        log.info("watching block devices (%s events)", self.monitor_source)

    def _attach_dir(self) -> None:
        root = self.app.prepare_drive_dir()
        try:
            marker = self.app.open_root(root)
        except (BluegrassError, OSError) as exc:
            self._set_drive("unusable", str(exc))
            return
        self.drive = DriveView(
            "ready",
            time.time(),
            "a folder standing in for the drive",
            id=marker.id,
            root=str(root),
            found_by="--drive-dir",
        )

    def _scan(self, why: str) -> None:
        if self.drive.state in ("ready", "ejected"):
            return
        with contextlib.suppress(OSError):
            found = drive.find_candidates(self.app.label)
            if found:
                self._attach(found[0], why)

    def _on_udev(self, device: pyudev.Device) -> None:
        action = device.action
        devnum = (os.major(device.device_number), os.minor(device.device_number))
        if self.drive.devnum == devnum and self.drive.state in ("ready", "ejected"):
            gone = action == "remove" or not drive.devnum_present(devnum)
            if not gone and action == "change" and self.drive.state == "ready":
                gone = drive.probe(device.device_node or "").get("UUID") != self.drive.uuid
            if gone:
                if self.drive.state == "ready":
                    self._vanished(f"the drive went away ({action} event for {device.device_node})")
                else:
                    self._set_drive("absent", "the ejected drive was unplugged")
                return
        if action in ("add", "change") and self.drive.state not in ("ready", "ejected"):
            with contextlib.suppress(OSError):
                found = drive.candidate(device, self.app.label)
                if found:
                    self._attach(found, f"udev {action} event ({self.monitor_source})")

    def _attach(self, found: drive.Candidate, why: str) -> None:
        mountpoint = self.app.mountpoint
        try:
            current = drive.mount_at(mountpoint)
            ours = False
            if current is None:
                drive.check_fs(found.device)
                drive.mount(found.device, mountpoint)
                ours = True
            elif current.devnum != found.devnum:
                raise drive.DriveError(
                    f"{mountpoint} already has another file system mounted ({current.source})"
                )
            try:
                marker = self.app.open_root(mountpoint)
            except (DriveMissing, OSError):
                if ours:
                    drive.unmount(mountpoint)
                raise
        except (BluegrassError, OSError) as exc:
            self._set_drive("unusable", f"{found.device}: {exc}")
            log.warning("drive %s not used: %s", found.device, exc)
            self.attach_failures += 1
            if self.attach_failures <= ATTACH_RETRIES:
                # A device just plugged in can still be busy (udev probing it, the kernel
                # releasing a previous mount: EBUSY): look again shortly, a few times.
                self.next_drive_check = min(self.next_drive_check, time.time() + 2)
            return
        self.attach_failures = 0
        missing_since = self.drive.since if self.drive.state == "missing" else None
        self.drive = DriveView(
            "ready",
            time.time(),
            f"mounted at {mountpoint}",
            found.device,
            found.devnum,
            found.uuid,
            marker.id,
            str(mountpoint),
            why,
            ours,
        )
        log.info("drive %s (%s) ready at %s, found by %s", marker.id, found.device, mountpoint, why)
        if missing_since is not None:
            log.info("drive back after %.0f s", time.time() - missing_since)

    def _check_drive(self) -> None:
        """Is the mounted drive still there and readable? Is an absent one back?"""
        self._heartbeat()
        if self.drive.state == "ready" and not self.app.drive_dir:
            if not self._drive_alive():
                self._vanished("the drive stopped answering (unplugged, or I/O errors)")
        elif self.drive.state != "ready" and not self.app.drive_dir:
            self._scan("periodic scan")

    def _drive_alive(self) -> bool:
        root = Path(self.drive.root or self.app.mountpoint)
        current = drive.mount_at(root)
        if current is None:
            note = self.state.get("eject")
            if note and note.get("uuid") == self.drive.uuid:
                self._set_drive("ejected", "unmounted by `drive eject`: safe to unplug", keep=True)
            else:
                self._set_drive("absent", f"{root} was unmounted by someone else")
            return True
        if self.drive.devnum and not drive.devnum_present(self.drive.devnum):
            return False
        try:
            os.statvfs(root)
            return drive.read_marker(root) is not None
        except OSError:
            return False

    def _vanished(self, reason: str) -> None:
        log.warning("%s", reason)
        if self.runner is not None:
            self.runner.cancel(reason)
        if self.worker is not None:
            self.worker.join(timeout=60)
        root = Path(self.drive.root or self.app.mountpoint)
        if not self.app.drive_dir and drive.mount_at(root) is not None:
            # Lazily: processes may still hold files on the dead file system; the kernel lets
            # go of the device once they close them (a loop device then detaches).
            with contextlib.suppress(BluegrassError):
                drive.unmount(root, lazy=True)
        since = self.drive.since if self.drive.state == "missing" else time.time()
        keep = self.drive
        self.drive = DriveView(
            "missing", since, reason, keep.device, keep.devnum, keep.uuid, keep.id
        )

    def _set_drive(self, state: str, message: str, keep: bool = False) -> None:
        old = self.drive
        if keep:
            self.drive = DriveView(
                state, time.time(), message, old.device, old.devnum, old.uuid, old.id
            )
        else:
            self.drive = DriveView(state, time.time(), message)

    # -- jobs -------------------------------------------------------------------------------

    def _cloud_problem(self) -> str | None:
        """Why no job can reach the cloud now (not enrolled), else None."""
        try:
            self.app.source()
        except BluegrassError as exc:
            if self.cloud.state != "not-enrolled":
                log.warning("no jobs until this appliance is enrolled: %s", exc)
                self.cloud = CloudView("not-enrolled", time.time(), 0, 0.0, str(exc))
            return str(exc)
        if self.cloud.state == "not-enrolled":
            log.info("enrolled: jobs can run")
            self.cloud = CloudView()
        return None

    def _maybe_start_job(self, now: float) -> bool:
        if self.worker is not None or self.stopping or self.drive.state != "ready":
            return False
        if now < self.cloud.next_try:
            return False
        due = [k for k in jobs.KINDS if 0 <= self.next_due[k] <= now]
        if not due or self._cloud_problem():
            return False
        self._start_job(due[0])
        return True

    def _start_job(self, kind: str, request: int | None = None) -> None:
        runner = Runner()
        root = Path(self.drive.root or self.app.mountpoint)
        devnum = None if self.app.drive_dir else self.drive.devnum
        self.runner, self.running_kind = runner, kind
        self.ping = self.notifier.ping(kind)
        self.ping.start()
        self.worker = threading.Thread(
            target=self._work,
            args=(kind, root, devnum, runner, request),
            name=f"job-{kind}",
            daemon=True,
        )
        self.worker.start()

    # -- what the panel asks for --------------------------------------------------------------

    def _take_requests(self) -> bool:
        """Answer the panel's requests: a job runs like a scheduled one (ignoring the cloud's
        back-off: a person asking is the best time to try), an eject happens at once."""
        if self.stopping:
            return False
        taken = False
        for request in self.state.open_requests():
            ident, kind = int(request["id"]), str(request["kind"])
            if kind == "eject":
                ok, message = self._eject_for_panel()
                self.state.request_done(ident, ok, message)
                taken = True
                continue
            refusal = self._job_refusal(kind)
            if refusal is not None:
                self.state.request_done(ident, False, refusal)
                taken = True
            elif self.worker is None:
                log.info("%s job asked for by %s (panel)", kind, request["requested_by"])
                self._start_job(kind, ident)
                taken = True
            # else it waits (queued) until the running job is done
        return taken

    def _job_refusal(self, kind: str) -> str | None:
        if kind not in jobs.KINDS:
            return f"Unknown job {kind!r}."
        if kind == "files" and not self.app.config.get("files.enabled"):
            return "Pulling the latest files is turned off (files.enabled in the settings)."
        problem = self._cloud_problem()
        if problem:
            return f"Not possible yet: {problem}"
        return _drive_refusal(self.drive)

    def _eject_for_panel(self) -> tuple[bool, str]:
        if self.app.drive_dir:
            return False, "The drive is a plain folder here (--drive-dir): nothing to eject."
        if self.drive.state == "ejected":
            return True, "The drive is already ejected: you can unplug it."
        if self.drive.state != "ready":
            return False, _drive_refusal(self.drive) or "No drive is mounted."
        if self.worker is not None:
            return False, (
                f"The {self.running_kind} job is running; eject the drive once it is done."
            )
        try:
            device = eject(self.app)
        except BluegrassError as exc:
            log.warning("eject from the panel failed: %s", exc)
            return False, f"The drive was not ejected: {exc}"
        self._set_drive("ejected", "unmounted from the panel: safe to unplug", keep=True)
        log.info("drive %s ejected from the panel", device)
        return True, "The drive is unmounted: you can unplug it now."

    def _work(
        self,
        kind: str,
        root: Path,
        devnum: tuple[int, int] | None,
        runner: Runner,
        request: int | None,
    ) -> None:
        try:
            with job_lock(self.app.paths):
                if devnum is not None:
                    current = drive.mount_at(root)
                    if current is None or current.devnum != devnum:
                        raise DriveMissing(f"the drive is no longer mounted at {root}")
                origin = "daemon" if request is None else "panel"
                outcome = jobs.run(self.app, kind, root, runner, origin, request)
        except JobBusy as exc:
            outcome = jobs.Outcome(kind, "busy", str(exc))
        except DriveMissing as exc:
            outcome = jobs.Outcome(kind, "drive-failed", str(exc))
        except Exception as exc:  # the worker must always report back, or the daemon stalls
            log.exception("job %s crashed", kind)
            outcome = jobs.Outcome(kind, "failed", f"internal error: {exc!r}")
        outcome.request = request
        self.events.put(("job-done", outcome))

    def _on_job_done(self, outcome: jobs.Outcome) -> None:
        if self.worker is not None:
            self.worker.join()
        self.worker, self.runner, self.running_kind = None, None, None
        if self.ping is not None:
            if outcome.ok or outcome.outcome == "busy":  # busy: another job is the one running
                self.ping.success(outcome.message)
            else:
                self.ping.fail(1, f"{outcome.outcome}: {outcome.message}")
            self.ping = None
        if outcome.request is not None:
            message = outcome.message[:1].upper() + outcome.message[1:]
            self.state.request_done(outcome.request, outcome.ok, message)
        now = time.time()
        kind = outcome.kind
        every = self.app.seconds(f"schedule.{kind}_every")
        log.info("%s job: %s: %s", kind, outcome.outcome, outcome.message)
        if outcome.outcome == "cloud-unreachable":
            self._cloud_failed(outcome.message, now)
            return
        if outcome.outcome in ("ok", "failed", "drive-full"):
            self._cloud_ok(now)
        if outcome.outcome == "cloud-refused":
            self.cloud = CloudView("refused", now, 0, now + every, outcome.message)
        drive_gone = False
        if outcome.outcome != "ok" and self.drive.state == "ready" and not self.app.drive_dir:
            # Whatever the job said, a failure may be the drive going away under it (git does
            # not always say "Input/output error"): ask the drive itself.
            if not self._drive_alive():
                self._vanished(f"the drive failed during the {kind} job: {outcome.message}")
                drive_gone = True
        if drive_gone or outcome.outcome in ("drive-failed", "cancelled"):
            # Run again as soon as a drive is ready.
            self.next_due[kind] = now
            return
        if outcome.outcome == "busy":
            self.next_due[kind] = now + min(60, self.app.seconds("schedule.retry_min"))
            return
        self.next_due[kind] = now + every

    def _cloud_failed(self, message: str, now: float) -> None:
        attempts = self.cloud.attempts + 1 if self.cloud.state == "unreachable" else 1
        since = self.cloud.since if self.cloud.state == "unreachable" else now
        low = self.app.seconds("schedule.retry_min")
        high = self.app.seconds("schedule.retry_max")
        delay = min(high, low * 2 ** min(attempts - 1, 30))
        self.cloud = CloudView("unreachable", since, attempts, now + delay, message)
        log.warning(
            "cloud unreachable (attempt %d), next try in %d s: %s", attempts, delay, message
        )

    def _cloud_ok(self, now: float) -> None:
        if self.cloud.state != "ok":
            self.cloud = CloudView("ok", now, 0, 0.0, "")

    # -- health, publishing, shutdown -------------------------------------------------------

    def _record_health(self) -> None:
        root = Path(self.drive.root) if self.drive.state == "ready" and self.drive.root else None
        found = health.snapshot(root)
        self.state.put("health", found)
        for kind, message in health.problems(
            found,
            self.app.config.get("drive.low_space_percent"),
            self.app.config.get("health.max_temperature"),
        ):
            self.state.alert(kind, "drive" if kind.startswith("drive") else "pi", message)

    def _heartbeat(self) -> None:
        self.state.put("heartbeat", time.time())

    def publish(self, state: str = "running") -> None:
        drive_view = asdict(self.drive)
        self.state.put("drive", drive_view)
        self.state.put("cloud", asdict(self.cloud))
        self.state.put(
            "daemon",
            {
                "state": state,
                "pid": os.getpid(),
                "started": self.started,
                "monitor": self.monitor_source,
                "running": self.running_kind,
                "next": {
                    k: (
                        max(v, self.cloud.next_try)
                        if v >= 0 and self.cloud.state != "not-enrolled"
                        else None
                    )
                    for k, v in self.next_due.items()
                },
            },
        )

    def _shutdown(self) -> None:
        log.info("stopping")
        if self.runner is not None:
            self.runner.cancel("the daemon is stopping")
        if self.worker is not None:
            self.worker.join(timeout=60)
            # Record the cancelled job's outcome rather than leaving it "running".
            with contextlib.suppress(queue.Empty):
                while True:
                    kind, payload = self.events.get_nowait()
                    if kind == "job-done":
                        self._on_job_done(payload)  # type: ignore[arg-type]
        if self.observer is not None:
            self.observer.stop()
        if self.panel is not None:
            # Before the drive goes: a download in progress holds files on it.
            self.panel.stop()
        self.state.abandon_requests("The appliance stopped before doing this; ask again.")
        if self.drive.state == "ready" and self.drive.mounted_by_us:
            os.sync()
            try:
                drive.unmount(Path(self.drive.root or self.app.mountpoint))
                self._set_drive("absent", "released when the daemon stopped")
            except BluegrassError as exc:
                log.warning("%s", exc)
        elif self.drive.state == "ready":
            # Not ours to unmount (a folder, or mounted before we started); no longer watched.
            self._set_drive("absent", "not watched: the daemon stopped")
        self.publish("stopped")


def _drive_refusal(view: DriveView) -> str | None:
    """Why no job can use the drive now, in words for a person; None when it is ready."""
    if view.state == "ready":
        return None
    since = time.strftime("%Y-%m-%d %H:%M", time.localtime(view.since))
    return {
        "missing": f"The backup drive is missing since {since} ({view.message}).",
        "ejected": "The drive is ejected: plug it in again first.",
        "absent": "No backup drive is plugged in.",
        "unusable": f"The drive cannot be used: {view.message}",
    }.get(view.state, f"The drive is not ready ({view.state}).")


def main(app: Appliance, panel: PanelServer | None = None) -> int:
    return Daemon(app, panel).run()


def setup_logging() -> None:
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
