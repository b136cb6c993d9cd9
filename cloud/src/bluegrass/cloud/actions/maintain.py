"""`bluegrass-cloud maintain`: pack loose objects and refresh commit-graphs."""

from __future__ import annotations

import argparse
import sys

from bluegrass.cloud import corruption
from bluegrass.cloud.commits import is_busy
from bluegrass.cloud.datadir import DataRoot
from bluegrass.cloud.maintenance import maintain_one, summary
from bluegrass.core.store import RepositoryError
from bluegrass.core.store.damage import RepositoryDamaged
from bluegrass.core.store.git import GitError


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
    busy, damaged = [], []
    for user in users:
        root.user_dir(user)
        for path in sorted((root.repos / user).glob("*.git")):
            segment = path.name[:-4]
            name = f"{user}/{segment}"
            try:
                # Repacking a damaged repository would say "maintained" over it, or pack the
                # damage into a new pack (decision 220): checked first, refused if damaged.
                corruption.check_before_writing(root, user, segment, "maintain")
                result = maintain_one(path)
            except RepositoryDamaged as exc:
                damaged.append(str(exc))
                continue
            except GitError as exc:
                if not corruption.looks_damaged(str(exc)):
                    raise
                found = corruption.report_damaged(root, user, segment, [str(exc)], "maintain")
                damaged.append(found.describe(name))
                continue
            except RepositoryError as exc:
                if not is_busy(exc):
                    raise
                busy.append(name)
                continue
            print(f"{name}: {summary(result)}")
    for name in busy:
        sys.stderr.write(f"bluegrass-cloud: error: {name}: busy (a commit is running); skipped\n")
    for text in damaged:
        sys.stderr.write(f"bluegrass-cloud: error: {text}\n")
    return 1 if busy or damaged else 0
