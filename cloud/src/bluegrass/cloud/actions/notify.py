"""`bluegrass-cloud notify test`: a test message to every notification URL, said per URL."""

from __future__ import annotations

import argparse

from bluegrass.cloud import notifications, settings
from bluegrass.cloud.datadir import DataRoot
from bluegrass.core.notify import test_report


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


def run_test(args: argparse.Namespace) -> int:
    root = DataRoot.from_args(args.data).require()
    cfg = settings.load(root.path)
    lines, code = test_report(notifications.notifier(root.path, cfg).test(), cfg.path)
    for line in lines:
        print(line)
    return code
