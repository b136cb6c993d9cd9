"""`bluegrass-cloud replicate`: upload what is new to the replica on S3."""

from __future__ import annotations

import argparse
import sys

from bluegrass.cloud import settings
from bluegrass.cloud.datadir import DataRoot
from bluegrass.cloud.replica import status
from bluegrass.cloud.replica.remote import ReplicaUnreachable
from bluegrass.cloud.replica.replicate import replicate
from bluegrass.cloud.replica.schedule import describe
from bluegrass.core.cli import emit_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "replicate",
        help="upload what is new to the replica on S3",
        description="Upload the server's state and every user's new history (git bundles, "
        "their refs, then a manifest, under new names only) to the bucket set in [replica], "
        "encrypted per user. Nothing in the bucket is ever replaced or deleted. A run that was "
        "interrupted is finished without sending again what already arrived.",
    )
    p.add_argument("--user", help="only this user's histories (the server's state goes too)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    root = DataRoot.from_args(args.data).require()
    try:
        result = replicate(root, settings.load(root.path), args.user)
    except ReplicaUnreachable as exc:
        if args.user is None:
            _record(root, status.UNREACHABLE, str(exc))
        raise
    if args.user is None:  # one user's upload is not the whole replica's
        errors = "; ".join(f"{e['area']}: {e['error']}" for e in result.errors)
        outcome = status.FAILED if errors else status.OK
        _record(root, outcome, errors or describe(result))
    if args.json:
        emit_json(result.to_json())
    else:
        if result.admin_secret_created:
            print(
                f"The administrator secret is {result.admin_secret_created}: keep a copy "
                "away from this server; without it the replica cannot be read"
            )
        for area in result.areas:
            if area.nothing_new:
                print(f"{area.area}: nothing new")
            else:
                print(
                    f"{area.area}: {area.uploaded} objects ({area.uploaded_bytes} bytes) "
                    f"uploaded, manifest {area.manifest}"
                )
        print(f"replicated in {result.seconds:.2f} s")
    for error in result.errors:
        sys.stderr.write(f"bluegrass-cloud: error: {error['area']}: {error['error']}\n")
    return 1 if result.errors else 0


def _record(root: DataRoot, outcome: str, detail: str) -> None:
    status.record(root.path, outcome, detail)
