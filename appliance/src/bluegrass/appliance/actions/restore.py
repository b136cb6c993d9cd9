"""`bluegrass-appliance restore`: get files back from the drive's mirror."""

from __future__ import annotations

import argparse
from pathlib import Path

from bluegrass.appliance.context import Appliance
from bluegrass.appliance.mirror import mirror_path
from bluegrass.core import names
from bluegrass.core.cli import emit_json
from bluegrass.core.errors import UsageError
from bluegrass.core.store import Repository, restore


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "restore",
        help="restore a snapshot from the drive into a new folder",
        description="Restore SEGMENT (or PATH inside it) as of a snapshot from the drive's "
        "mirror into --to, a new or empty folder. A folder is restored as --to itself; a file "
        "lands inside --to. Needs no cloud.",
    )
    p.add_argument("segment", metavar="SEGMENT")
    p.add_argument("path", metavar="PATH", nargs="?", help="a file or folder inside the segment")
    p.add_argument("--user", metavar="USER", help="whose segment (default: the enrolled user)")
    p.add_argument(
        "--at",
        metavar="REV|DATE",
        help="a commit id, or a date: the newest snapshot at or before it (default: the "
        "latest); a bare day YYYY-MM-DD means the end of that day",
    )
    p.add_argument("--to", metavar="DIR", required=True, help="where to restore (new or empty)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    app = Appliance.from_args(args)
    segment = names.check("segment", args.segment)
    user = args.user
    if user is None:
        enrolled = app.enrollment()
        if enrolled is None:
            raise UsageError("say whose segment with --user (this appliance is not enrolled)")
        user = enrolled.user
    names.check("user", user)
    with app.drive_for_job() as root:
        path = mirror_path(root, user, segment)
        if not path.exists():
            raise UsageError(f"no mirror of {user}/{segment} on the drive ({path})")
        target = Path(args.to).absolute()
        if target.is_relative_to(root / "bluegrass"):
            raise UsageError(f"--to {target} is inside the drive's backups; restore elsewhere")
        result = restore(Repository.open(path), target, at=args.at, path=args.path)
    if args.json:
        emit_json(result.to_json())
    else:
        print(
            f"Restored {result.files} files ({result.bytes} bytes) from snapshot "
            f"{result.commit[:12]} into {result.target}"
        )
    return 0
