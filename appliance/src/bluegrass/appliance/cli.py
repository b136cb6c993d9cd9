"""`bluegrass-appliance`: the Pi daemon's command line (its jobs are not built yet)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from bluegrass.core import cli


def build_parser() -> cli.Parser:
    return cli.Parser(
        prog="bluegrass-appliance",
        description="Bluegrass appliance: mirrors your cloud's histories onto a drive at home. "
        "(Its commands are not available in this version yet.)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
