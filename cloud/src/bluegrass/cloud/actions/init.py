"""`bluegrass-cloud init`: create the data root."""

from __future__ import annotations

import argparse

from bluegrass.cloud import hostkey, settings, tlskey
from bluegrass.cloud.accounts import Accounts
from bluegrass.cloud.datadir import MARKER, DataRoot
from bluegrass.core.cli import emit_json
from bluegrass.core.errors import UsageError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="create the data root", description=__doc__)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    root = DataRoot.from_args(args.data)
    if root.path.exists() and not root.path.is_dir():
        raise UsageError(f"{root.path} exists and is not a folder")
    created = not root.initialised
    if created and root.path.exists() and any(root.path.iterdir()):
        raise UsageError(
            f"{root.path} is not empty and not a Bluegrass data root; choose another --data"
        )
    root.files.mkdir(parents=True, exist_ok=True)
    root.repos.mkdir(exist_ok=True)
    config_path = root.path / settings.FILENAME
    if not config_path.exists():
        config_path.write_text(settings.default_text())
    settings.load(root.path)  # an existing file must still be valid
    Accounts.open(root.path).close()  # creates or migrates the accounts database
    host_key = hostkey.public_line(root.path)
    tls_pin = tlskey.pin(root.path)
    (root.path / MARKER).write_text("Bluegrass cloud data root, format 1\n")
    if args.json:
        emit_json(
            {"data": str(root.path), "created": created, "host_key": host_key, "tls_pin": tls_pin}
        )
    else:
        print(f"{'Created' if created else 'Already a'} data root at {root.path}")
        print(f"SSH host key (devices pin it through their enrollment codes): {host_key}")
        print(f"Device port TLS key (pinned the same way): {tls_pin}")
    return 0
