"""`bluegrass-cloud replica check`: download and check the replica; probe its protection."""

from __future__ import annotations

import argparse

from bluegrass.cloud import settings
from bluegrass.cloud.datadir import DataRoot
from bluegrass.cloud.replica.check import check_replica
from bluegrass.core.cli import emit_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "replica",
        help="the replica on S3",
        description="The encrypted replica of every history on S3 (docs/replica.md).",
    )
    group = p.add_subparsers(metavar="ACTION")
    c = group.add_parser(
        "check",
        help="download and check what the bucket holds",
        description="Download every object the newest complete manifests name, check their "
        "sha256, verify and replay every segment's bundles, say how old the newest manifest "
        "is, and probe whether the server's key can delete a stored object. Exits 1 if "
        "anything is damaged or missing; an unprotected bucket is a warning.",
    )
    c.add_argument("--json", action="store_true", help="print the result as JSON")
    c.set_defaults(handler=run_check)


def run_check(args: argparse.Namespace) -> int:
    root = DataRoot.from_args(args.data).require()
    result = check_replica(root, settings.load(root.path))
    if args.json:
        emit_json(result.to_json())
    else:
        for area in result.areas:
            if area.manifest is None:
                state = "no complete manifest"
            else:
                state = (
                    f"{area.manifest} of {area.created} ({area.age_hours} h old), "
                    f"{area.objects} objects, {area.bytes} bytes"
                )
            print(f"{area.area}: {state}: {'ok' if not area.problems else 'PROBLEMS'}")
            for problem in area.problems:
                print(f"  {problem}")
        # The bucket's protection is a warning, not a failure: the replica itself is sound.
        if result.protected:
            print(f"protected ({result.protection}): {result.probe}")
        elif result.protected is None:
            print(f"WARNING: the bucket's protection is unknown: {result.probe}")
        else:
            print(f"WARNING: the bucket is not protected ({result.protection}): {result.probe}")
    return 0 if result.ok else 1
