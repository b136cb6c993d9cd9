"""The appliance's notifications: its `[notify]` table and the Notifier its jobs call.

Mirroring the histories is the main job (`[notify] ping_url`); pulling the latest files has
its own check (`[notify.pings] files`). State and outbox live in STATE/notify/.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bluegrass.core import notify
from bluegrass.core.config import Config

ROLE = "appliance"
MAIN_JOB = "mirror"
OTHER_JOBS = ("files",)
SCHEMA = notify.schema(ROLE, MAIN_JOB, OTHER_JOBS)


def settings_of(cfg: Config) -> notify.NotifySettings:
    return notify.parse(cfg.get("notify"), MAIN_JOB)


def notifier(
    state_dir: Path, cfg: Config, log: Callable[[str], None] | None = None, *, echo: bool = False
) -> notify.Notifier:
    """`echo`: the delivery's lines go to this process's standard error too (the daemon's
    log)."""
    return notify.Notifier(state_dir, settings_of(cfg), role=ROLE, log=log, echo=echo)
