"""The `notify` command's arguments, the same in every role (`bluegrass-cloud notify test`,
`bluegrass-appliance notify test`, `bluegrass notify test`); each role's actions/notify.py
passes the handler that finds its own configuration."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def add_parser(
    sub: argparse._SubParsersAction, run_test: Callable[[argparse.Namespace], int]
) -> None:
    p = sub.add_parser(
        "notify",
        help="notifications ([notify], docs/notifications.md)",
        description="Notifications through Apprise URLs and pings (docs/notifications.md).",
    )
    group = p.add_subparsers(metavar="ACTION")
    t = group.add_parser(
        "test",
        help="send a test message to every notification URL",
        description="Send a test message to every URL of [notify] now, each within "
        "timeout_seconds, and say per URL whether it went. Exits 1 if any failed (or none "
        "is configured). Ping URLs are not pinged: a test ping would tell the monitor a job ran.",
    )
    t.set_defaults(handler=run_test)
