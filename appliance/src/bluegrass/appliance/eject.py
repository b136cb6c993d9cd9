"""Ejecting the backup drive: flushed and unmounted with the job lock held, so that it can be
unplugged, and marked so that the daemon does not mount it again until it has gone."""

from __future__ import annotations

import os
import time

from bluegrass.appliance import drive
from bluegrass.appliance.context import Appliance, job_lock
from bluegrass.core.errors import BluegrassError, UsageError


def eject(app: Appliance, wait: float = 0) -> str:
    """Given the appliance and how long to wait for a running job, flush and unmount the
    drive, holding the job lock, and return the device that was ejected. Raise UsageError for
    a plain-folder drive, BluegrassError if no drive is mounted or a job holds the lock.

    Used by `drive eject` and by the daemon for the panel. A note in the state tells the
    daemon not to mount this drive again until it has been unplugged."""
    if app.drive_dir:
        raise UsageError("the drive is a plain folder (--drive-dir): nothing to eject")
    mounted = drive.mount_at(app.mountpoint)
    if mounted is None:
        raise BluegrassError(f"no drive is mounted at {app.mountpoint}")
    # Holding the job lock: no job of the daemon's can start on the drive while it goes.
    with job_lock(app.paths, wait):
        uuid = drive.probe(mounted.source).get("UUID") if mounted.source.startswith("/") else None
        app.state.put("eject", {"uuid": uuid, "device": mounted.source, "at": time.time()})
        os.sync()
        drive.unmount(app.mountpoint)
    return mounted.source
