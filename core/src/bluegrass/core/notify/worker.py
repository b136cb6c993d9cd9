"""The delivery child's entry point: `python -m bluegrass.core.notify.worker ROOT [--echo]`.

A module of its own, which nothing imports, so `-m` runs it without the package having
loaded it first."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from bluegrass.core.notify.deliver import Deliverer


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: python -m bluegrass.core.notify.worker ROOT [--echo]", file=sys.stderr)
        return 2
    Deliverer(Path(argv[1]), echo="--echo" in argv[2:]).run()
    return 0


if __name__ == "__main__":
    os.umask(0o077)  # the state and log it writes are its role's, no one else's
    sys.exit(main(sys.argv))
