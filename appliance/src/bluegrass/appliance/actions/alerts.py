"""`bluegrass-appliance alerts`: list and acknowledge alerts."""

from __future__ import annotations

import argparse

from bluegrass.appliance.context import Appliance
from bluegrass.appliance.state import iso
from bluegrass.core.cli import emit_json
from bluegrass.core.errors import UsageError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "alerts",
        help="list alerts; acknowledge them",
        description="Alerts: a history rewrite the mirror refused, objects that failed checks, a "
        "full drive, refused credentials, ... (docs/appliance.md). An acknowledged alert is "
        "raised again as a new one if it happens again.",
    )
    p.add_argument("--all", action="store_true", help="include acknowledged alerts")
    p.add_argument("--ack", metavar="ID|all", help="acknowledge alert ID, or all of them")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    app = Appliance.from_args(args)
    if args.ack:
        if args.ack != "all" and not args.ack.isdigit():
            raise UsageError(f"--ack takes an alert id or 'all', not {args.ack!r}")
        changed = app.state.acknowledge(None if args.ack == "all" else int(args.ack))
        if args.json:
            emit_json({"acknowledged": changed})
        else:
            print(f"{changed} alert(s) acknowledged")
        return 0
    found = app.state.alerts(include_acknowledged=args.all)
    if args.json:
        emit_json({"alerts": [a.to_json() for a in found]})
        return 0
    if not found:
        print("No alerts.")
    for a in found:
        times = f" ({a.count} times, last {iso(a.last_seen)})" if a.count > 1 else ""
        print(f"#{a.id} {iso(a.first_seen)} {a.kind} {a.subject}: {a.message}{times}")
    return 0
