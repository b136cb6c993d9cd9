"""`bluegrass-cloud maintain`: pack loose objects and refresh commit-graphs."""

from __future__ import annotations

import argparse

from bluegrass.cloud.datadir import DataRoot
from bluegrass.core.store import Repository


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "maintain",
        help="pack and index repositories",
        description="Pack each repository's loose objects (a geometric repack: old packs are "
        "left alone) and write its commit-graph with changed-path filters, which keeps "
        "history views fast. Run after commits; the scheduler does it daily.",
    )
    p.add_argument("--user", help="only this user's repositories")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    root = DataRoot.from_args(args.data).require()
    users = [args.user] if args.user else root.users()
    for user in users:
        root.user_dir(user)
        for path in sorted((root.repos / user).glob("*.git")):
            with Repository.open(path).lock():
                Repository.open(path).maintain()
            print(f"{user}/{path.name[:-4]}: maintained")
    return 0
