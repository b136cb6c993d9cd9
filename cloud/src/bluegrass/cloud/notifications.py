"""The cloud's notifications: its `[notify]` table and the Notifier its jobs call.

The daily commit is the main job (`[notify] ping_url`); the replica's upload has its own
check (`[notify.pings] replicate`). State and outbox live in DATA/notify/.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bluegrass.core import notify
from bluegrass.core.config import Config

ROLE = "cloud"
MAIN_JOB = "commit"
OTHER_JOBS = ("replicate",)
SCHEMA = notify.schema(ROLE, MAIN_JOB, OTHER_JOBS)


def settings_of(cfg: Config) -> notify.NotifySettings:
    return notify.parse(cfg.get("notify"), MAIN_JOB)


def notifier(
    data_root: Path, cfg: Config, log: Callable[[str], None] | None = None, *, echo: bool = False
) -> notify.Notifier:
    """`echo`: the delivery's lines go to this process's standard error too (`run`'s log)."""
    return notify.Notifier(data_root, settings_of(cfg), role=ROLE, log=log, echo=echo)
