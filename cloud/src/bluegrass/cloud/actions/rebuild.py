"""`bluegrass-cloud rebuild --from-replica | --from-drive DIR`: fill an empty data root from
the replica or from a Pi's drive."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bluegrass.cloud.datadir import DataRoot
from bluegrass.cloud.replica.fromdrive import DriveRebuildResult, rebuild_from_drive
from bluegrass.cloud.replica.rebuild import rebuild_from_replica
from bluegrass.core.cli import emit_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rebuild",
        help="rebuild this server from its replica or from a Pi's drive",
        description="--from-replica: fill an empty data root, holding only bluegrass-cloud.toml "
        "(with [replica]) and replica/admin.json, with the server's state (accounts, host key, "
        "web key, users' replica secrets) and every user's histories and live files, from the "
        "newest complete manifests in the bucket. --from-drive DIR: fill an empty data root "
        "(bluegrass-cloud.toml at most) with every user's histories and latest files from a "
        "Pi's drive mounted at DIR; the users are made again from the drive's folders, with a "
        "new host key, and every device enrolls again. Ready for `run` afterwards.",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--from-replica",
        action="store_true",
        help="rebuild from the S3 replica set in [replica]",
    )
    source.add_argument(
        "--from-drive",
        metavar="DIR",
        help="rebuild from the Pi's drive mounted at DIR (read only: nothing on it changes)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    root = DataRoot.from_args(args.data)
    if args.from_drive is not None:
        return _from_drive(root, rebuild_from_drive(root, Path(args.from_drive)), args.json)
    result = rebuild_from_replica(root)
    for warning in result.warnings:
        sys.stderr.write(f"bluegrass-cloud: warning: {warning}\n")
    if args.json:
        emit_json(result.to_json())
    else:
        for seg in result.segments:
            print(
                f"{seg.user}/{seg.segment}: {seg.bundles} bundles, at {seg.head[:12]}, "
                f"{seg.live_files} live files"
            )
        print(
            f"Rebuilt {root.path} from {result.server_manifest}: {len(result.users)} users, "
            f"{len(result.segments)} histories, in {result.seconds:.1f} s"
        )
    return 0


def _from_drive(root: DataRoot, result: DriveRebuildResult, as_json: bool) -> int:
    for warning in result.warnings:
        sys.stderr.write(f"bluegrass-cloud: warning: {warning}\n")
    if as_json:
        emit_json(result.to_json())
        return 0
    for seg in result.segments:
        history = f"at {seg.head[:12]}" if seg.head else "no history yet"
        print(f"{seg.user}/{seg.segment}: {history}, {seg.live_files} live files ({seg.live})")
    print(
        f"Rebuilt {root.path} from the drive {result.drive_id or result.drive}: "
        f"{len(result.users)} users, {len(result.segments)} segments, in {result.seconds:.1f} s"
    )
    print(f"New SSH host key: {result.host_key}")
    print("The drive holds no accounts, keys or device secrets. Next:")
    print("  bluegrass-cloud device add USER    for each device, the Pi too (enroll it again)")
    print("  bluegrass-cloud user password USER --admin    for the web interface")
    return 0
