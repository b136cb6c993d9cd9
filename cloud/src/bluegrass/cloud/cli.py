"""`bluegrass-cloud`: the cloud server's command line."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from bluegrass.cloud.actions import (
    commit,
    device,
    init,
    kit,
    log,
    maintain,
    notify,
    rebuild,
    repair,
    replica,
    replicate,
    restore,
    run,
    user,
    verify,
    web,
)
from bluegrass.core import cli


def build_parser() -> cli.Parser:
    parser = cli.Parser(
        prog="bluegrass-cloud",
        description="Bluegrass cloud server: keeps users' synced folders and their daily history.",
    )
    parser.add_argument(
        "--data",
        metavar="DIR",
        help="the data root (default: $BLUEGRASS_DATA, else ./bluegrass-data)",
    )
    sub = parser.add_subparsers(metavar="COMMAND", parser_class=cli.Parser)
    for action in (
        init,
        user,
        device,
        commit,
        log,
        restore,
        verify,
        maintain,
        repair,
        run,
        web,
        replicate,
        replica,
        rebuild,
        kit,
        notify,
    ):
        action.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
