"""`bluegrass-cloud web setup-code`: the one-time code that the web interface's setup asks for.

Until an administrator exists, the web interface offers only its first-run setup page. A
cloud server is on the internet, so that page also asks for a setup code that only the
person running the server can know: 20 characters of Crockford's base32 (100 random bits),
shown in groups of five, kept in DATA/run/web-setup-code (0600). `run` makes it at start
while setup is pending and logs it; this command prints it (making it if needed). A
successful setup deletes it; once an administrator exists (also one made with `user
password NAME --admin`) no code is accepted, and `run` or this command deletes a stale file.
"""

from __future__ import annotations

import argparse

from bluegrass.cloud.datadir import DataRoot
from bluegrass.cloud.setupcode import (
    SETUP_CODE_FILE,
    ensure_setup_code,
    remove_setup_code,
    setup_code_path,
    setup_pending,
)
from bluegrass.core.cli import emit_json
from bluegrass.core.errors import BluegrassError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "web",
        help="the web interface's first-run setup",
        description="The web interface (served by `run` on the HTTP port).",
    )
    wsub = p.add_subparsers(metavar="ACTION")
    code = wsub.add_parser(
        "setup-code",
        help="print the one-time code the web setup page asks for",
        description="Print the setup code that the web interface's first-run setup page asks "
        "for, together with the administrator's name and password, while no administrator "
        f"exists (it is made if there is none yet, and kept in DATA/{SETUP_CODE_FILE}). It "
        "works once. Fails once setup is done: an administrator exists.",
    )
    code.add_argument("--json", action="store_true", help="print the result as JSON")
    code.set_defaults(handler=run_setup_code)


def run_setup_code(args: argparse.Namespace) -> int:
    root = DataRoot.from_args(args.data).require()
    if not setup_pending(root.path):
        remove_setup_code(root.path)
        raise BluegrassError(
            "web setup is done: an administrator exists (sign in on the web page; a forgotten "
            "password: bluegrass-cloud user password NAME)"
        )
    code = ensure_setup_code(root.path)
    path = setup_code_path(root.path)
    if args.json:
        emit_json({"setup_code": code, "file": str(path)})
    else:
        print(f"Web setup code: {code}")
        print(
            "Open the web interface's /setup page and enter it with the administrator's name "
            "and password; it works once."
        )
    return 0
