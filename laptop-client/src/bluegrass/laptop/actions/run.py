"""`bluegrass run`: the daemon. Syncs each segment on its interval until stopped.

Segments are synced one at a time: first when the daemon starts (unless one synced less than
an interval ago), then every interval (default 15 minutes) with 10% jitter; after a failure,
retries back off 1, 2, 4, ... minutes up to [sync] backoff_max_minutes. The configuration is
re-read between syncs, so `bluegrass segment add` takes effect without a restart.

SIGTERM or SIGINT (Ctrl-C) stops it cleanly: a sync under way is asked to finish gracefully
(rclone completes the transfers in flight and saves its state), then the daemon exits 0.
Only one daemon runs per user.
"""

from __future__ import annotations

import argparse
import os
from datetime import datetime

from bluegrass.core.errors import UsageError
from bluegrass.laptop import actions, locking
from bluegrass.laptop.daemon import Daemon
from bluegrass.laptop.runner import Interrupts


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="keep syncing on a schedule (what the service runs)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(handler=run)


def _log(text: str) -> None:
    stamp = datetime.now().astimezone().isoformat(timespec="seconds")
    print(f"{stamp} {text}", flush=True)


def run(_args: argparse.Namespace) -> int:
    current = actions.load(enrolled=True)
    places = current.places
    lock = locking.FileLock(places.daemon_lock)
    try:
        lock.acquire()
    except locking.Busy:
        raise UsageError("`bluegrass run` is already running for this user") from None
    _log(f"bluegrass run: started (pid {os.getpid()})")
    try:
        with Interrupts() as interrupts:
            Daemon(current, lambda: actions.load(enrolled=True), _log).run(interrupts)
    finally:
        try:
            places.daemon_info.unlink(missing_ok=True)
        finally:
            lock.release()
    _log("bluegrass run: stopped")
    return 0
