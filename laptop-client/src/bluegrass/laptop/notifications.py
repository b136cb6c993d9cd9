"""The laptop's notifications: its `[notify]` table and the Notifier the daemon calls.

Syncing is the job (`[notify] ping_url`, pinged for every segment's sync); `sync-failing` is
said once a segment's syncs have failed for `sync_failing_hours` (a desktop notification with
an Apprise URL such as dbus:// on Linux, macosx:// or windows://). State and outbox live in
the state folder's notify/.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bluegrass.core import notify
from bluegrass.core.config import Field

ROLE = "laptop"
MAIN_JOB = "sync"
SCHEMA = notify.schema(
    ROLE,
    MAIN_JOB,
    extra={
        "sync_failing_hours": Field(
            int,
            6,
            "a whole number of hours from 1 to 720",
            lambda v: 1 <= v <= 720,
            doc="sync-failing is said once a segment's syncs have failed for this long.",
        )
    },
)


def settings_of(values: dict[str, Any]) -> notify.NotifySettings:
    return notify.parse(values, MAIN_JOB)


def notifier(
    state_dir: Path,
    values: dict[str, Any],
    log: Callable[[str], None] | None = None,
    *,
    echo: bool = False,
) -> notify.Notifier:
    """`values`: the loaded [notify] table. `echo`: the delivery's lines go to this process's
    standard error too (the daemon's log)."""
    return notify.Notifier(state_dir, settings_of(values), role=ROLE, log=log, echo=echo)
