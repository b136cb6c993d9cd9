"""Telling someone: notifications through Apprise and healthchecks-style pings, for every
role (docs/notifications.md). A role builds one `Notifier` from its `[notify]` table and its
state folder; wiring an event is one call to `Notifier.update` (a problem that lasts) or
`Notifier.occurred` (a one-off)."""

from bluegrass.core.notify.events import EVENTS, for_role
from bluegrass.core.notify.notifier import (
    RESOLVED,
    STARTED,
    Notifier,
    Ping,
    TestResult,
    test_report,
)
from bluegrass.core.notify.settings import NotifySettings, Target, check, parse, schema

__all__ = [
    "EVENTS",
    "RESOLVED",
    "STARTED",
    "Notifier",
    "NotifySettings",
    "Ping",
    "Target",
    "TestResult",
    "check",
    "for_role",
    "parse",
    "schema",
    "test_report",
]
