"""`bluegrass-cloud repair USER SEGMENT --from-drive DIR | --from-replica`: heal a damaged
repository from another copy of its history."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from bluegrass.cloud.datadir import DataRoot
from bluegrass.cloud.repair import RepairResult, damage_found, repair, require_repository
from bluegrass.cloud.replica.fromdrive import DRIVE_FOLDER, drive_id_of, safe_to_read
from bluegrass.cloud.replica.segmentcopy import history_from_replica
from bluegrass.core.cli import emit_json
from bluegrass.core.errors import UsageError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "repair",
        help="heal a damaged repository from a Pi's drive or the replica",
        description="Heal USER/SEGMENT's repository, known damaged (a commit, maintain, verify "
        "or restore found it so), from another copy of its history: the Pi's drive (plugged "
        "in, or its folder) or the replica. Damaged or missing objects come from the good "
        "copy; snapshots only this server has are kept, or named and refused unless --force. "
        "The result must pass verify; the damaged repository is kept aside, renamed.",
    )
    p.add_argument("user")
    p.add_argument("segment")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--from-drive",
        metavar="DIR",
        help="the Pi's drive mounted at DIR (read only: nothing on it changes)",
    )
    source.add_argument(
        "--from-replica", action="store_true", help="the S3 replica set in [replica]"
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="repair even if snapshots only this server had are lost (they are named)",
    )
    p.add_argument(
        "--even-if-sound",
        action="store_true",
        help="rebuild the repository from the other copy even though it is not found damaged",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    root = DataRoot.from_args(args.data).require()
    require_repository(root, args.user, args.segment)
    if args.from_drive is not None:
        result = _from_drive(root, args)
    else:
        result = _from_replica(root, args)
    if args.json:
        emit_json(result.to_json())
        return 0
    name = f"{result.user}/{result.segment}"
    for lost in result.lost:
        sys.stderr.write(
            f"bluegrass-cloud: warning: {name}: snapshot {lost.commit[:12]} "
            f"({lost.date or 'unreadable'}) could not be recovered and is gone from the history\n"
        )
    print(
        f"{name}: repaired from {result.source}: {len(result.problems)} problem(s) healed; "
        f"history at {result.head[:12]} ({result.kept_beyond_source} snapshot(s) newer than "
        f"the copy kept from this server); verify passes"
    )
    print(f"The damaged repository is kept at {result.damaged_copy}; delete it when satisfied.")
    return 0


def _from_drive(root: DataRoot, args: argparse.Namespace) -> RepairResult:
    drive = Path(args.from_drive).absolute()
    drive_id_of(drive)
    mirror = drive / DRIVE_FOLDER / args.user / f"{args.segment}.git"
    if not (mirror / "HEAD").is_file():
        raise UsageError(
            f"{drive} holds no history of {args.user}/{args.segment} (no "
            f"{DRIVE_FOLDER}/{args.user}/{args.segment}.git); give the drive of a Pi that "
            "mirrors it"
        )
    problems = damage_found(root, args.user, args.segment, args.even_if_sound)
    with tempfile.TemporaryDirectory(prefix="bluegrass-repair-") as scratch:
        env = safe_to_read(mirror, Path(scratch) / "mirror.gitconfig")
        return repair(
            root,
            args.user,
            args.segment,
            mirror,
            f"the drive's mirror {mirror}",
            problems,
            env=env,
            force=args.force,
        )


def _from_replica(root: DataRoot, args: argparse.Namespace) -> RepairResult:
    problems = damage_found(root, args.user, args.segment, args.even_if_sound)
    with tempfile.TemporaryDirectory(prefix="bluegrass-repair-", dir=root.path) as scratch:
        copy, manifest = history_from_replica(root, args.user, args.segment, Path(scratch))
        return repair(
            root,
            args.user,
            args.segment,
            copy,
            f"the replica's {manifest}",
            problems,
            force=args.force,
        )
