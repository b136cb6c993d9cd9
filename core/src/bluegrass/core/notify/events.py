"""The events a role can tell someone about: their names (what `[notify]` subscribes to) and
the words a message about each starts with.

Names are the contract with people's configuration files: once released, one is never
renamed. A role accepts only its own events in its `[notify]` table, so a typo or an event
the role never raises is refused when the file is loaded, not silently never sent.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    name: str
    title: str  # "… failed": the message's title begins with it, the subject follows
    roles: frozenset[str]


CLOUD, APPLIANCE, LAPTOP = "cloud", "appliance", "laptop"


def _event(name: str, title: str, *roles: str) -> Event:
    return Event(name, title, frozenset(roles))


EVENTS: dict[str, Event] = {
    e.name: e
    for e in (
        # wired now (docs/notifications.md lists which role raises which)
        _event("commit-failed", "Daily snapshot failed", CLOUD),
        _event("replica-failed", "Replica upload failing", CLOUD),
        _event("sync-failing", "Syncs failing", LAPTOP),
        # named now so configurations can subscribe; raised as issue 16's part 4 is wired
        _event("snapshot-suspicious", "Suspicious snapshot", CLOUD),
        _event("integrity-failed", "Integrity check failed", CLOUD, APPLIANCE),
        _event("repository-corrupt", "Repository corrupt", CLOUD, APPLIANCE),
        _event("drill-failed", "Restore drill failed", CLOUD, APPLIANCE),
        _event("login-lockout", "Login locked out", CLOUD, APPLIANCE),
        _event("emergency-access", "Emergency access requested", CLOUD),
        _event("device-silent", "Device not synced", CLOUD),
        _event("mirror-silent", "Appliance not mirrored", CLOUD),
        _event("mass-change-stopped", "Mass change stopped", LAPTOP),
        _event("mirror-failed", "Mirror failed", APPLIANCE),
        _event("history-rewrite-refused", "History rewrite refused", APPLIANCE),
        _event("drive-missing", "Backup drive missing", APPLIANCE),
        _event("drive-full", "Backup drive filling up", APPLIANCE),
        _event("drive-unhealthy", "Backup drive unhealthy", APPLIANCE),
        _event("cloud-unreachable", "Cloud unreachable", APPLIANCE),
        _event("history-stale", "No new snapshot", APPLIANCE),
    )
}


def for_role(role: str) -> list[str]:
    """The event names `role` may subscribe to, in catalogue order."""
    return [name for name, event in EVENTS.items() if role in event.roles]
