"""What every command and the daemon share: state folder, configuration, enrollment, source,
the job lock, and getting hold of the drive for a job."""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import json
import os
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

from bluegrass.appliance import drive, readme, settings
from bluegrass.appliance.errors import DriveMissing
from bluegrass.appliance.source import HttpSource, LocalSource, Source
from bluegrass.appliance.state import State
from bluegrass.core import config, enrollment, pinnedhttps
from bluegrass.core.enrollment import Enrollment
from bluegrass.core.errors import BluegrassError, ConfigError, UsageError


class Appliance:
    """This appliance as every command and the daemon see it: its state folder, settings,
    enrollment and drive (not a Flask app: the panel's is bluegrass.panel.app)."""

    def __init__(self, paths: settings.Paths, cfg: config.Config, drive_dir: str | None) -> None:
        self.paths = paths
        self.config = cfg
        chosen = drive_dir or cfg.get("drive.dir")
        self.drive_dir = Path(chosen).absolute() if chosen else None
        self._state: State | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Appliance:
        paths = settings.Paths.resolve(getattr(args, "state", None))
        return cls(paths, settings.load(paths), getattr(args, "drive_dir", None))

    @property
    def state(self) -> State:
        if self._state is None:
            self.paths.ensure()
            self._state = State(self.paths.database)
        return self._state

    def seconds(self, key: str) -> int:
        return settings.seconds(self.config.get(key))

    @property
    def label(self) -> str:
        return self.config.get("drive.label")

    @property
    def mountpoint(self) -> Path:
        return Path(self.config.get("drive.mountpoint"))

    @property
    def expected_id(self) -> str | None:
        return self.config.get("drive.id") or None

    # -- enrollment -------------------------------------------------------------------------

    def enrollment(self) -> Enrollment | None:
        try:
            raw = json.loads(self.paths.enrollment.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{self.paths.enrollment}: unreadable ({exc})") from None
        try:
            return enrollment.decode(raw["code"])
        except (KeyError, TypeError, UsageError) as exc:
            raise ConfigError(f"{self.paths.enrollment}: not a valid enrollment ({exc})") from None

    def save_enrollment(self, code: str) -> Enrollment:
        found = enrollment.decode(code)
        self.paths.ensure()
        path = self.paths.enrollment
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump({"code": code.strip(), "enrolled_at": time.time()}, out)
        tmp.chmod(0o600)
        tmp.replace(path)
        return found

    def source(self) -> Source:
        url = self.config.get("cloud.url")
        found = self.enrollment()
        if url.startswith("file://"):
            return LocalSource(Path(url[len("file://") :]), found.user if found else None)
        if found is None:
            raise UsageError(
                "this appliance is not enrolled: run `bluegrass-appliance enroll CODE` with "
                "the code `bluegrass-cloud user add` printed"
            )
        side = found.device_side
        if url and side is not None:
            # Another address of the device port (a port forward); the code's pin still
            # decides whether the peer is the cloud. The schema allows https only here.
            parts = urllib.parse.urlsplit(url)
            side = pinnedhttps.DeviceSide(parts.hostname or "", parts.port or 443, side.pin)
        return HttpSource(side, found, float(self.seconds("cloud.timeout")))

    # -- the drive --------------------------------------------------------------------------

    def open_root(self, root: Path) -> drive.Marker:
        """Check that `root` is a Bluegrass drive we may use; refresh its README."""
        marker = drive.read_marker(root)
        if marker is None:
            raise DriveMissing(
                f"{root} has no Bluegrass marker ({drive.MARKER}); prepare the drive with "
                "`bluegrass-appliance drive prepare DEVICE`"
            )
        if self.expected_id and marker.id != self.expected_id:
            raise DriveMissing(
                f"the drive at {root} is {marker.id}, but drive.id in {self.paths.config} "
                f"asks for {self.expected_id}"
            )
        (root / "bluegrass").mkdir(exist_ok=True)
        readme.write(root, self.label)
        return marker

    def prepare_drive_dir(self) -> Path:
        """A plain folder standing in for the drive gets a marker the first time."""
        assert self.drive_dir is not None
        self.drive_dir.mkdir(parents=True, exist_ok=True)
        if (
            drive.read_marker(self.drive_dir) is None
            and not (self.drive_dir / drive.MARKER).exists()
        ):
            drive.write_marker(self.drive_dir, drive.Marker.new())
        return self.drive_dir

    @contextlib.contextmanager
    def drive_for_job(self) -> Iterator[Path]:
        """The drive's root for a job run from the command line.

        Uses the drive where the daemon (or anyone) mounted it; otherwise finds it, mounts it
        for the job and unmounts it after, leaving the system as it was.
        """
        if self.drive_dir:
            root = self.prepare_drive_dir()
            self.open_root(root)
            yield root
            return
        mounted = drive.mount_at(self.mountpoint)
        if mounted is not None:
            self.open_root(self.mountpoint)
            yield self.mountpoint
            return
        found = drive.find_candidates(self.label)
        if not found:
            raise DriveMissing(
                f"no backup drive found (an ext4 file system labelled {self.label}); plug it "
                "in, or prepare one with `bluegrass-appliance drive prepare DEVICE`"
            )
        chosen = found[0]
        drive.check_fs(chosen.device)
        drive.mount(chosen.device, self.mountpoint)
        try:
            self.open_root(self.mountpoint)
            yield self.mountpoint
        finally:
            os.sync()
            drive.unmount(self.mountpoint)


@contextlib.contextmanager
def job_lock(paths: settings.Paths, wait: float = 0) -> Iterator[None]:
    """One job at a time on this appliance, whether the daemon or a command runs it."""
    paths.ensure()
    handle = paths.job_lock.open("a+")
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    raise JobBusy(
                        "another job is running (the daemon's?); try again later"
                    ) from None
                # Waiting for another process's lock: flock has no timeout of its own.
                time.sleep(0.2)
        yield
    finally:
        handle.close()


class JobBusy(BluegrassError):
    pass
