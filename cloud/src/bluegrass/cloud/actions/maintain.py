"""`bluegrass-cloud maintain`: pack loose objects and refresh commit-graphs."""

from __future__ import annotations

import argparse
import sys

from bluegrass.cloud.commits import is_busy
from bluegrass.cloud.datadir import DataRoot
from bluegrass.cloud.maintenance import maintain_one, summary
from bluegrass.core.store import RepositoryError


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
    busy = []
    for user in users:
        root.user_dir(user)
        for path in sorted((root.repos / user).glob("*.git")):
            name = f"{user}/{path.name[:-4]}"
            try:
                result = maintain_one(path)
            except RepositoryError as exc:
                if not is_busy(exc):
                    raise
                busy.append(name)
                continue
            print(f"{name}: {summary(result)}")
    for name in busy:
        sys.stderr.write(f"bluegrass-cloud: error: {name}: busy (a commit is running); skipped\n")
    return 1 if busy else 0
