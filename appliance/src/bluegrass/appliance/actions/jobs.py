"""`bluegrass-appliance mirror` and `files`: run one job now, in this process."""

from __future__ import annotations

import argparse

from bluegrass.appliance import jobs
from bluegrass.appliance.context import Appliance, job_lock
from bluegrass.appliance.runner import Runner
from bluegrass.core.cli import emit_json

_HELP = {
    "mirror": (
        "mirror every segment's history onto the drive now",
        "Fetch every segment's history from the cloud into DRIVE/bluegrass/USER/SEGMENT.git, "
        "append-only: a rewritten history is refused and raises an alert. Uses the drive "
        "where it is mounted, or mounts it for the job. Exit 1 if anything failed.",
    ),
    "files": (
        "pull the latest files onto the drive now",
        "Copy every segment's latest files from the cloud's sync endpoint into "
        "DRIVE/bluegrass/USER/SEGMENT/ with rclone (read-only on the cloud). Exit 1 if "
        "anything failed.",
    ),
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    for kind in jobs.KINDS:
        short, long = _HELP[kind]
        p = sub.add_parser(kind, help=short, description=long)
        p.add_argument(
            "--wait",
            metavar="SECONDS",
            type=float,
            default=0,
            help="wait this long for a running job (the daemon's) to finish (default: refuse)",
        )
        p.add_argument("--json", action="store_true", help="print the result as JSON")
        p.set_defaults(handler=run, kind=kind)


def run(args: argparse.Namespace) -> int:
    app = Appliance.from_args(args)
    app.source()  # not enrolled is bad input (exit 2), not a failed job
    with job_lock(app.paths, args.wait), app.drive_for_job() as root:
        outcome = jobs.run(app, args.kind, root, Runner(), "command")
    if args.json:
        emit_json(outcome.to_json())
    elif outcome.ok:
        print(outcome.message)
    else:
        # One line for the failure, as every Bluegrass command does.
        raise_failure(outcome)
    return 0 if outcome.ok else 1


def raise_failure(outcome: jobs.Outcome) -> None:
    from bluegrass.core.errors import BluegrassError

    raise BluegrassError(f"{outcome.kind} {outcome.outcome}: {outcome.message}")
