"""`bluegrass-appliance run`: the daemon (systemd starts it; SIGTERM stops it cleanly)."""

from __future__ import annotations

import argparse

from bluegrass.appliance import daemon
from bluegrass.appliance.app import App


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run the daemon: watch for the drive, mirror and pull on schedule",
        description="Watch block devices (pyudev) for the backup drive and mount it; mirror "
        "every history (hourly by default) and pull the latest files (every 15 minutes); back "
        "off while the cloud is unreachable; survive the drive being unplugged at any moment. "
        "Logs to stderr; state in STATE/state.sqlite (see `status`). SIGTERM stops it cleanly.",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    app = App.from_args(args)
    app.source()  # not enrolled is an error now, not an hourly log line
    return daemon.main(app)
