"""The `[notify]` table every role's configuration file has, and what it means.

    [notify]
    urls = ["mailto://…"]            # every event goes to these
    repeat_hours = 24                # while a problem lasts, said again at most this often
    ping_url = "https://hc-ping.com/UUID"   # the role's main job (cloud: the daily commit)
    [notify.pings]
    replicate = "https://hc-ping.com/UUID2" # the role's other jobs, each its own check
    [[notify.targets]]
    url = "ntfy://ntfy.sh/TOPIC"
    events = ["commit-failed"]        # only these (default: every event)

Checked when the file is loaded: a URL Apprise cannot parse, an event the role never raises,
a ping URL that is not http(s) are refused naming the file, the key and what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from bluegrass.core.config import Config, Field, Table, TableList
from bluegrass.core.errors import ConfigError
from bluegrass.core.notify.events import for_role

_APPRISE_URL = 'an Apprise URL such as "mailto://user:pass@example.org" or "ntfy://ntfy.sh/topic"'
_PING_URL = 'empty, or an http(s) URL such as "https://hc-ping.com/UUID"'


def is_apprise_url(value: str) -> bool:
    # Imported here: Apprise loads its 100+ plugins, which a role without [notify] never needs.
    import apprise

    return (
        "://" in value and apprise.Apprise.instantiate(value, suppress_exceptions=True) is not None
    )


def is_ping_url(value: str) -> bool:
    if value == "":
        return True
    if any(ch.isspace() for ch in value):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _is_url_list(value: list) -> bool:
    return all(isinstance(v, str) and is_apprise_url(v) for v in value)


def schema(
    role: str,
    main_job: str,
    other_jobs: tuple[str, ...] = (),
    extra: dict[str, Field] | None = None,
) -> Table:
    """The `[notify]` table of `role`, whose main job (the one `ping_url` pings) is
    `main_job`; `other_jobs` each get a key of `[notify.pings]`; `extra`: the role's own keys
    (when its events are said)."""
    events = ", ".join(for_role(role))
    fields: dict[str, Field | Table | TableList] = {
        "urls": Field(
            list,
            [],
            f"a list of Apprise URLs (each {_APPRISE_URL})",
            _is_url_list,
            doc="Apprise URLs told about every event (docs/notifications.md).",
            secret=True,
        ),
        "repeat_hours": Field(
            int,
            24,
            "a whole number of hours from 1 to 720",
            lambda v: 1 <= v <= 720,
            doc="While a problem lasts, it is said again at most this often.",
        ),
        "timeout_seconds": Field(
            int,
            20,
            "a whole number of seconds from 1 to 300",
            lambda v: 1 <= v <= 300,
            doc="How long one message or ping may take before it is given up and retried.",
        ),
        "ping_url": Field(
            str,
            "",
            _PING_URL,
            is_ping_url,
            secret=True,  # a ping URL's UUID lets anyone ping (or silence) the check
            doc=f"A healthchecks-style ping URL for the {main_job} job: /start, success, "
            "/EXIT-CODE with a short log on failure.",
        ),
        "ping_log_bytes": Field(
            int,
            10000,
            "a whole number of bytes from 0 to 100000",
            lambda v: 0 <= v <= 100000,
            doc="At most this much of a failed job's log goes with its failure ping.",
        ),
        "targets": TableList(
            Table(
                {
                    "url": Field(
                        str, "", _APPRISE_URL, is_apprise_url, doc="An Apprise URL.", secret=True
                    ),
                    "events": Field(
                        list,
                        [],
                        f"a list of event names (some of: {events})",
                        lambda v: all(isinstance(e, str) for e in v),
                        doc="The events it is told about (empty: every event).",
                    ),
                }
            ),
            doc="An Apprise URL told only about some events.",
        ),
    }
    fields.update(extra or {})
    if other_jobs:
        fields["pings"] = Table(
            {job: Field(str, "", _PING_URL, is_ping_url, secret=True) for job in other_jobs},
            doc="Ping URLs of the other jobs, one check each.",
        )
    return Table(fields, doc="Notifications and pings (docs/notifications.md).")


@dataclass(frozen=True)
class Target:
    url: str
    events: frozenset[str]  # empty: every event

    def wants(self, event: str) -> bool:
        return not self.events or event in self.events


@dataclass(frozen=True)
class NotifySettings:
    targets: tuple[Target, ...] = ()
    pings: dict[str, str] = field(default_factory=dict)  # job -> ping URL
    repeat_seconds: float = 24 * 3600.0
    timeout_seconds: float = 20.0
    ping_log_bytes: int = 10000

    @property
    def enabled(self) -> bool:
        return bool(self.targets or self.pings)


def check(cfg: Config, role: str) -> None:
    """What the schema cannot say: each target's events are the role's, and it has a URL."""
    where = str(cfg.path) if cfg.path else "<defaults>"
    known = for_role(role)
    for index, target in enumerate(cfg.get("notify.targets")):
        key = f"notify.targets[{index}]"
        if not target["url"]:
            raise ConfigError(f"{where}: {key}.url: expected {_APPRISE_URL}, got nothing")
        for name in target["events"]:
            if name not in known:
                raise ConfigError(
                    f"{where}: {key}.events: unknown event {name!r} "
                    f"(expected some of: {', '.join(known)})"
                )


def parse(values: dict[str, Any], main_job: str) -> NotifySettings:
    """The loaded `[notify]` table (already checked) as settings."""
    targets = [Target(url, frozenset()) for url in values["urls"]]
    targets += [Target(t["url"], frozenset(t["events"])) for t in values["targets"]]
    pings = {job: url for job, url in values.get("pings", {}).items() if url}
    if values["ping_url"]:
        pings[main_job] = values["ping_url"]
    return NotifySettings(
        targets=tuple(targets),
        pings=pings,
        repeat_seconds=values["repeat_hours"] * 3600.0,
        timeout_seconds=float(values["timeout_seconds"]),
        ping_log_bytes=values["ping_log_bytes"],
    )
