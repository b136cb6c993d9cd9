"""`bluegrass-appliance setup-code`: print the panel's one-time setup code."""

from __future__ import annotations

import argparse

from bluegrass.appliance import setupcode
from bluegrass.appliance.context import Appliance
from bluegrass.core.cli import emit_json
from bluegrass.core.errors import BluegrassError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "setup-code",
        help="print the one-time code the panel's first-run setup asks for",
        description="Print the code the web panel's first-run setup asks for, making it if "
        "needed (STATE/panel-setup-code, 0600). Only someone who can run this on the Pi (or "
        "read its console) sees it, so reaching the panel on the network is not enough to "
        "become its administrator. It works once; after setup (or `password NAME`) there is "
        "none and this exits 1.",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    app = Appliance.from_args(args)
    found = setupcode.current(app)
    if found is None:
        raise BluegrassError(
            "the panel is set up already: sign in, or set a password with "
            "`bluegrass-appliance password NAME`"
        )
    if args.json:
        emit_json({"setup_code": found.code, "file": str(found.file)})
    else:
        print(found.code)
    return 0
