"""`bluegrass-cloud rebuild --from-replica`: fill an empty data root from the replica."""

from __future__ import annotations

import argparse
import sys

from bluegrass.cloud.datadir import DataRoot
from bluegrass.cloud.replica.rebuild import rebuild_from_replica
from bluegrass.core.cli import emit_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rebuild",
        help="rebuild this server from its replica",
        description="Fill an empty data root, holding only bluegrass-cloud.toml (with "
        "[replica]) and replica/admin.json, with the server's state (accounts, host key, web "
        "key, users' replica secrets) and every user's histories and live files, from the "
        "newest complete manifests in the bucket. Ready for `run` afterwards.",
    )
    p.add_argument(
        "--from-replica",
        action="store_true",
        required=True,
        help="rebuild from the S3 replica set in [replica]",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    root = DataRoot.from_args(args.data)
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
