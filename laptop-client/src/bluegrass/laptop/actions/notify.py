"""`bluegrass notify test`: a test message to every notification URL, said per URL."""

from __future__ import annotations

import argparse

from bluegrass.core.notify import test_report
from bluegrass.laptop import actions, notifications


def add_parser(sub: argparse._SubParsersAction) -> None:
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


def run_test(_args: argparse.Namespace) -> int:
    current = actions.load()
    notifier = notifications.notifier(current.places.state_dir, current.notify)
    lines, code = test_report(notifier.test(), current.path)
    for line in lines:
        print(line)
    return code
