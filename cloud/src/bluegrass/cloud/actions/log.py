"""`bluegrass-cloud log USER SEGMENT`: a segment's snapshots, newest first."""

from __future__ import annotations

import argparse

from bluegrass.cloud.datadir import DataRoot
from bluegrass.core.cli import emit_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("log", help="list a segment's snapshots", description=__doc__)
    p.add_argument("user", metavar="USER")
    p.add_argument("segment", metavar="SEGMENT")
    p.add_argument("--json", action="store_true", help="print the snapshots as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    root = DataRoot.from_args(args.data).require()
    commits = root.open_repo(args.user, args.segment).log()
    if args.json:
        emit_json(
            {
                "user": args.user,
                "segment": args.segment,
                "snapshots": [c.to_json() for c in commits],
            }
        )
        return 0
    for c in commits:
        flag = "  SUSPICIOUS" if c.suspicious else ""
        print(f"{c.commit[:12]}  {c.date.isoformat(timespec='seconds')}  {c.summary}{flag}")
    return 0
