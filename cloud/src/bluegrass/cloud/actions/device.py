"""`bluegrass-cloud device add|list|revoke|add-key`: the laptops and Pis that log in as a user.

Each device has its own secret (shown once, inside its enrollment code, and stored only as an
argon2 hash) and optionally SSH public keys, so one lost laptop is revoked without touching
the others.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bluegrass.cloud.accounts import Accounts
from bluegrass.cloud.credentials import NewDevice, parse_public_keys
from bluegrass.cloud.datadir import DataRoot
from bluegrass.cloud.users import add_device
from bluegrass.core.cli import emit_json
from bluegrass.core.errors import UsageError

SHOWN_ONCE = "shown once: it is a credential, anyone who has it can read and write the user's files"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("device", help="add, list or revoke a user's devices", description=__doc__)
    dsub = p.add_subparsers(metavar="ACTION")

    add = dsub.add_parser(
        "add",
        help="add a device and print its enrollment code",
        description="Add a device for USER and print its enrollment code, the one line that "
        "sets up a laptop or a Pi (`bluegrass enroll CODE`). The code holds the device's "
        "secret and is shown only this once.",
    )
    add.add_argument("user", metavar="USER")
    add.add_argument("--name", help='a name to recognise the device by (default: "device N")')
    add.add_argument("--json", action="store_true", help="print the result as JSON")
    add.set_defaults(handler=run_add)

    ls = dsub.add_parser(
        "list", help="list devices", description="List the devices of USER, or of every user."
    )
    ls.add_argument("user", metavar="USER", nargs="?")
    ls.add_argument("--json", action="store_true", help="print the result as JSON")
    ls.set_defaults(handler=run_list)

    rv = dsub.add_parser(
        "revoke",
        help="revoke a device",
        description="Revoke DEVICE of USER: its secret and keys stop working at once (a "
        "running `bluegrass-cloud run` restarts its sync endpoint to drop open sessions). "
        "The device's record is kept, marked revoked.",
    )
    rv.add_argument("user", metavar="USER")
    rv.add_argument("device", metavar="DEVICE", help="the device id, e.g. d1a2b3c4e")
    rv.add_argument("--json", action="store_true", help="print the result as JSON")
    rv.set_defaults(handler=run_revoke)

    key = dsub.add_parser(
        "add-key",
        help="let a device log in with an SSH key",
        description="Register the SSH public keys in PUBKEYFILE (a .pub file or authorized_keys "
        "lines, without options) for DEVICE of USER, for key login to the sync endpoint.",
    )
    key.add_argument("user", metavar="USER")
    key.add_argument("device", metavar="DEVICE", help="the device id, e.g. d1a2b3c4e")
    key.add_argument("pubkeyfile", metavar="PUBKEYFILE", help="e.g. ~/.ssh/id_ed25519.pub")
    key.add_argument("--json", action="store_true", help="print the result as JSON")
    key.set_defaults(handler=run_add_key)


def print_code(new: NewDevice, code: str) -> None:
    print(f'Device {new.device.id} ("{new.device.name}"). Enrollment code, {SHOWN_ONCE}:')
    print(code)


def run_add(args: argparse.Namespace) -> int:
    root = DataRoot.from_args(args.data).require()
    added = add_device(root, args.user, args.name)
    new, code = added.new, added.code
    if args.json:
        emit_json(
            {
                "user": args.user,
                "device": new.device.id,
                "device_name": new.device.name,
                "enrollment_code": code,
            }
        )
    else:
        print_code(new, code)
    return 0


def run_list(args: argparse.Namespace) -> int:
    root = DataRoot.from_args(args.data).require()
    if args.user is not None:
        root.user_dir(args.user)
    with Accounts.open(root.path) as accounts:
        devices = accounts.devices(args.user)
    if args.json:
        emit_json({"devices": [d.to_json() for d in devices]})
        return 0
    for d in devices:
        state = f"revoked {d.revoked}" if d.revoked else "active"
        keys = f", {len(d.keys)} key(s)" if d.keys else ""
        print(f"{d.user}\t{d.id}\t{d.name}\tadded {d.created}\t{state}{keys}")
    if not devices:
        print("no devices")
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    root = DataRoot.from_args(args.data).require()
    with Accounts.open(root.path) as accounts:
        if not accounts.has_user(args.user):
            root.user_dir(args.user)  # the clearer error for an unknown user
        device, now = accounts.revoke(args.user, args.device)
    if args.json:
        emit_json({"user": device.user, "device": device.id, "revoked": device.revoked})
    elif now:
        print(f'Revoked device {device.id} ("{device.name}") of {device.user}')
    else:
        print(f"Device {device.id} of {device.user} was already revoked on {device.revoked}")
    return 0


def run_add_key(args: argparse.Namespace) -> int:
    root = DataRoot.from_args(args.data).require()
    root.user_dir(args.user)
    path = Path(args.pubkeyfile)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise UsageError(f"{path}: cannot read the public key file: {reason}") from None
    if "PRIVATE KEY" in text:
        raise UsageError(f"{path} holds a private key; give the .pub file")
    keys = parse_public_keys(text, str(path))
    with Accounts.open(root.path) as accounts:
        added = accounts.add_keys(args.user, args.device, keys)
    if args.json:
        emit_json({"user": args.user, "device": args.device, "added": [k.to_json() for k in added]})
        return 0
    for k in added:
        print(f"Added {k.type} key {k.fingerprint} to device {args.device} of {args.user}")
    if not added:
        print(f"Device {args.device} of {args.user} already has these keys")
    return 0
