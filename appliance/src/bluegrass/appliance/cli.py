"""`bluegrass-appliance`: the Raspberry Pi appliance's command line."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from bluegrass.appliance.actions import (
    alerts,
    drive,
    enroll,
    jobs,
    notify,
    password,
    restore,
    run,
    setup_code,
    status,
)
from bluegrass.core import cli


def build_parser() -> cli.Parser:
    parser = cli.Parser(
        prog="bluegrass-appliance",
        description="Bluegrass appliance: mirrors your cloud's histories and latest files onto "
        "a drive at home, append-only.",
    )
    parser.add_argument(
        "--state",
        metavar="DIR",
        help="configuration and state folder (default: $BLUEGRASS_APPLIANCE_STATE, else "
        "/var/lib/bluegrass-appliance)",
    )
    parser.add_argument(
        "--drive-dir",
        metavar="DIR",
        help="use a plain folder instead of a drive (no detection, no mounting)",
    )
    sub = parser.add_subparsers(metavar="COMMAND", parser_class=cli.Parser)
    for action in (
        enroll,
        drive,
        jobs,
        run,
        status,
        restore,
        alerts,
        password,
        setup_code,
        notify,
    ):
        action.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
