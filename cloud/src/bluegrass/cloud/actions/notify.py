"""`bluegrass-cloud notify test`: a test message to every notification URL, said per URL."""

from __future__ import annotations

import argparse

from bluegrass.cloud import notifications, settings
from bluegrass.cloud.datadir import DataRoot
from bluegrass.core.notify import command, test_report


def add_parser(sub: argparse._SubParsersAction) -> None:
    command.add_parser(sub, run_test)


def run_test(args: argparse.Namespace) -> int:
    root = DataRoot.from_args(args.data).require()
    cfg = settings.load(root.path)
    lines, code = test_report(notifications.notifier(root.path, cfg).test(), cfg.path)
    for line in lines:
        print(line)
    return code
