"""`bluegrass-appliance enroll CODE`: remember the cloud, the user and this device's secret."""

from __future__ import annotations

import argparse
import sys

from bluegrass.appliance.context import Appliance
from bluegrass.appliance.enroll import enroll, unpinned_warning
from bluegrass.core.cli import emit_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "enroll",
        help="set this appliance up with an enrollment code",
        description="Store the enrollment code printed by `bluegrass-cloud user add` (server, "
        "user, this device's credentials, the server's SSH host key) in STATE/enrollment.json, "
        "readable by root only. Enrolling again replaces it.",
    )
    p.add_argument("code", metavar="CODE", help="the code, starting with bg1-")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    app = Appliance.from_args(args)
    found = enroll(app, args.code)
    unpinned = unpinned_warning(found)
    if unpinned:
        print(f"bluegrass-appliance: warning: {unpinned}", file=sys.stderr)
    if args.json:
        emit_json(
            {
                "user": found.user,
                "server": found.server,
                "http_port": found.http_port,
                "cloud_url": found.http_base,
                "device_url": found.device_side.base if found.device_side else None,
                "sftp_port": found.sftp_port,
                "device": found.device,
                "state": str(app.paths.state),
            }
        )
    else:
        print(
            f"Enrolled as {found.user} on {found.server} (device {found.device}); "
            f"settings in {app.paths.config}"
        )
    return 0
