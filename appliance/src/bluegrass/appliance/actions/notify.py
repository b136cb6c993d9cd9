"""`bluegrass-appliance notify test`: a test message to every notification URL, per URL."""

from __future__ import annotations

import argparse

from bluegrass.appliance import notifications, settings
from bluegrass.core.notify import command, test_report


def add_parser(sub: argparse._SubParsersAction) -> None:
    command.add_parser(sub, run_test)


def run_test(args: argparse.Namespace) -> int:
    paths = settings.Paths.resolve(getattr(args, "state", None))
    cfg = settings.load(paths)
    lines, code = test_report(notifications.notifier(paths.state, cfg).test(), cfg.path)
    for line in lines:
        print(line)
    return code
