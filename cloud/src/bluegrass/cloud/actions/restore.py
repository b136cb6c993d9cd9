"""`bluegrass-cloud restore`: get a segment, a folder or a file back as it was."""

from __future__ import annotations

import argparse
from pathlib import Path

from bluegrass.cloud import corruption
from bluegrass.cloud.datadir import DataRoot
from bluegrass.core.cli import emit_json
from bluegrass.core.errors import BluegrassError, UsageError
from bluegrass.core.store import restore


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "restore",
        help="restore a snapshot into a new folder",
        description="Restore USER/SEGMENT (or PATH inside it) as of a snapshot into --to, a new "
        "or empty folder outside the data root. A folder is restored as --to itself; a file "
        "lands inside --to. Written into a temporary folder and renamed at the end, so an "
        "interrupted restore leaves nothing half-written.",
    )
    p.add_argument("user", metavar="USER")
    p.add_argument("segment", metavar="SEGMENT")
    p.add_argument("path", metavar="PATH", nargs="?", help="a file or folder inside the segment")
    p.add_argument(
        "--at",
        metavar="REV|DATE",
        help="a commit id, or a date: the newest snapshot at or before it (default: the latest); "
        "a bare day YYYY-MM-DD means the end of that day",
    )
    p.add_argument("--to", metavar="DIR", required=True, help="where to restore (new or empty)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    root = DataRoot.from_args(args.data).require()
    repo = root.open_repo(args.user, args.segment)
    target = Path(args.to)
    if root.contains(target):
        raise UsageError(
            f"--to {target} is inside the data root's live trees or histories; restore elsewhere"
        )
    try:
        result = restore(repo, target, at=args.at, path=args.path)
    except BluegrassError as exc:
        if not corruption.looks_damaged(str(exc)):
            raise
        found = corruption.report_damaged(root, args.user, args.segment, [str(exc)], "restore")
        raise BluegrassError(f"{exc}; {found.describe(f'{args.user}/{args.segment}')}") from None
    if args.json:
        emit_json(result.to_json())
    else:
        print(
            f"Restored {result.files} files ({result.bytes} bytes) from snapshot "
            f"{result.commit[:12]} into {result.target}"
        )
    return 0
