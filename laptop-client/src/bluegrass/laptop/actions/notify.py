"""`bluegrass notify test`: a test message to every notification URL, said per URL."""

from __future__ import annotations

import argparse

from bluegrass.core.notify import command, test_report
from bluegrass.laptop import actions, notifications


def add_parser(sub: argparse._SubParsersAction) -> None:
    command.add_parser(sub, run_test)


def run_test(_args: argparse.Namespace) -> int:
    current = actions.load()
    notifier = notifications.notifier(current.places.state_dir, current.notify)
    lines, code = test_report(notifier.test(), current.path)
    for line in lines:
        print(line)
    return code
