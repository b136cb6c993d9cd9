"""`bluegrass-appliance password NAME`: set a panel sign-in's password (or make the account)."""

from __future__ import annotations

import argparse
import getpass
import sys

from bluegrass.appliance import setupcode
from bluegrass.appliance.context import Appliance
from bluegrass.core.cli import emit_json
from bluegrass.core.errors import UsageError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "password",
        help="set the web panel password of NAME (made an administrator if new)",
        description="Set NAME's password for the web panel, making the account (an "
        "administrator of the appliance) if it does not exist; NAME's other sessions end. "
        "Asked twice on the terminal, or one line read from stdin with --password-stdin; at "
        "least 10 characters. The way back in when a password is forgotten.",
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin instead of asking",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=run)


def read_password(name: str, from_stdin: bool) -> str:
    # Imported here: loading it computes an argon2 hash, which every other command would pay.
    from bluegrass.appliance import webaccounts

    if from_stdin:
        line = sys.stdin.readline()
        return webaccounts.check_password(line.removesuffix("\n").removesuffix("\r"))
    if not sys.stdin.isatty():
        raise UsageError("no terminal to ask for the password on; use --password-stdin")
    first = getpass.getpass(f"Panel password for {name}: ")
    webaccounts.check_password(first)
    if getpass.getpass("Again: ") != first:
        raise UsageError("the two passwords are not the same; nothing was changed")
    return first


def run(args: argparse.Namespace) -> int:
    from bluegrass.appliance import webaccounts

    app = Appliance.from_args(args)
    name = webaccounts.check_name(args.name)
    digest = webaccounts.hash_password(read_password(name, args.password_stdin))
    with app.state.transaction() as db:
        created = db.execute("SELECT 1 FROM web_accounts WHERE name = ?", (name,)).fetchone()
        webaccounts.set_password(db, name, digest)
    setupcode.finish(app)  # an administrator exists: the first-run setup's code is void
    if args.json:
        emit_json({"name": name, "created": created is None})
    else:
        print(f"Panel password of {name} {'set' if created is None else 'changed'}.")
    return 0
