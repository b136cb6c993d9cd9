"""`bluegrass service install`: start `bluegrass run` at every login.

Writes this platform's service file to its standard place and prints the commands that start
it; it never enables or starts anything itself. `--dry-run` prints the file instead of
writing it, and with `--platform` shows another platform's file.
"""

from __future__ import annotations

import argparse
import sys

from bluegrass.core.errors import UsageError
from bluegrass.laptop import service
from bluegrass.laptop.settings import write_atomic

PLATFORMS = ("linux", "macos", "windows")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "service",
        help="run Bluegrass at login (systemd, launchd, Task Scheduler)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ssub = p.add_subparsers(metavar="ACTION")
    install = ssub.add_parser(
        "install", help="write the service file for this computer", description=__doc__
    )
    install.add_argument(
        "--dry-run", action="store_true", help="print the file and where it would go"
    )
    install.add_argument(
        "--platform",
        choices=PLATFORMS,
        help="the platform's file to show (with --dry-run; default: this computer's)",
    )
    install.set_defaults(handler=run_install)


def run_install(args: argparse.Namespace) -> int:
    here = service.this_platform()
    platform = args.platform or here
    if platform != here and not args.dry_run:
        raise UsageError(f"--platform {platform} can only be shown (--dry-run) on {here}")
    found = service.service_file(platform)
    if args.dry_run:
        print(f"# would write {found.path}")
        text = found.content.decode("utf-16" if platform == "windows" else "utf-8")
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        print("# then start it with:")
        for line in found.enable:
            print(f"#   {line}")
        return 0
    write_atomic(found.path, "", private=False)  # creates the folders
    found.path.write_bytes(found.content)
    if platform == "macos":
        (found.path.home() / "Library" / "Logs" / "Bluegrass").mkdir(parents=True, exist_ok=True)
    print(f"Wrote {found.path}")
    print("Start it now and at every login with:")
    for line in found.enable:
        print(f"  {line}")
    return 0
