"""`bluegrass`: the laptop client's command line."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.metadata import version

from bluegrass.core import cli, rclone
from bluegrass.laptop.actions import enroll, notify, run, segment, service, status, sync


def build_parser() -> cli.Parser:
    parser = cli.Parser(
        prog="bluegrass",
        description="Bluegrass laptop client: keeps chosen folders (segments) in two-way sync "
        "with your Bluegrass cloud, which keeps every day's version.",
    )
    sub = parser.add_subparsers(metavar="COMMAND", parser_class=cli.Parser)
    for action in (enroll, segment, sync, run, status, service, notify):
        action.add_parser(sub)
    shown = sub.add_parser("version", help="show versions of Bluegrass and its rclone")
    shown.set_defaults(handler=_version)
    return parser


def _version(_args: object) -> int:
    major, minor, patch = rclone.version()
    # The version is written once, in pyproject.toml; the installed metadata carries it here.
    ours = version("bluegrass-laptop")
    print(f"bluegrass {ours}, rclone {major}.{minor}.{patch} ({rclone.binary()})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
