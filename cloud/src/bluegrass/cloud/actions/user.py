"""`bluegrass-cloud user add|list|remove|password|quota`: the people whose files this server
keeps."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import shutil
import sys

from bluegrass.cloud import quota
from bluegrass.cloud.accounts import Accounts
from bluegrass.cloud.actions.device import print_code
from bluegrass.cloud.commits import is_busy
from bluegrass.cloud.datadir import DataRoot
from bluegrass.cloud.users import create_user
from bluegrass.core import names
from bluegrass.core.cli import emit_json
from bluegrass.core.errors import BluegrassError, UsageError
from bluegrass.core.store import Repository, RepositoryError
from bluegrass.panel.accounts import check_password as check_web_password
from bluegrass.panel.accounts import hash_password as hash_web_password


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("user", help="add, list or remove users", description=__doc__)
    usub = p.add_subparsers(metavar="ACTION")
    add = usub.add_parser(
        "add",
        help="add a user and their first device",
        description="Add a user: creates DATA/files/NAME/ (each sub-folder is a segment) and a "
        "first device, and prints that device's enrollment code (shown only this once). More "
        "devices: bluegrass-cloud device add NAME.",
    )
    add.add_argument("name", metavar="NAME")
    add.add_argument(
        "--device-name",
        default="first device",
        help='a name to recognise the first device by (default: "first device")',
    )
    add.add_argument("--json", action="store_true", help="print the result as JSON")
    add.set_defaults(handler=run_add)
    ls = usub.add_parser("list", help="list users and their segments", description="List users.")
    ls.add_argument("--json", action="store_true", help="print the result as JSON")
    ls.set_defaults(handler=run_list)
    rm = usub.add_parser(
        "remove",
        help="remove a user",
        description="Remove a user. A user who has files or history is only removed with "
        "--delete-data, which deletes them for good.",
    )
    rm.add_argument("name", metavar="NAME")
    rm.add_argument(
        "--delete-data", action="store_true", help="also delete the user's files and history"
    )
    rm.set_defaults(handler=run_remove)
    pw = usub.add_parser(
        "password",
        help="set a user's password for the web interface",
        description="Set NAME's password for the web interface (asked twice on the terminal, "
        "or one line read from stdin with --password-stdin), at least 10 characters. Every "
        "web session NAME has open ends. With --admin the user also becomes an administrator "
        "of the web interface, which makes an administrator without the web page's first-run "
        "setup; --no-admin takes that away again.",
    )
    pw.add_argument("name", metavar="NAME")
    pw.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin instead of asking",
    )
    role = pw.add_mutually_exclusive_group()
    role.add_argument(
        "--admin", dest="admin", action="store_const", const=True, help="make NAME an administrator"
    )
    role.add_argument(
        "--no-admin",
        dest="admin",
        action="store_const",
        const=False,
        help="make NAME an ordinary user (default for a new web login: unchanged otherwise)",
    )
    pw.add_argument("--json", action="store_true", help="print the result as JSON")
    pw.set_defaults(handler=run_password, admin=None)
    qu = usub.add_parser(
        "quota",
        help="set or remove a user's storage quota",
        description="Set NAME's storage quota: what their live files and their histories may "
        "occupy on this server, in decimal units (500M, 50G, 2T), or none. A user at or over "
        "their quota can still download, delete and rename through the sync endpoint, but "
        "not add bytes; their laptops say so. The change applies at once (the sync endpoint "
        "restarts, dropping open sessions).",
    )
    qu.add_argument("name", metavar="NAME")
    qu.add_argument("size", metavar="SIZE|none", help="e.g. 500M, 50G, or none for no quota")
    qu.add_argument("--json", action="store_true", help="print the result as JSON")
    qu.set_defaults(handler=run_quota)


def run_add(args: argparse.Namespace) -> int:
    root = DataRoot.from_args(args.data).require()
    added = create_user(root, args.name, device_name=args.device_name)
    new, code = added.device, added.code
    assert new is not None and code is not None
    if args.json:
        emit_json(
            {
                "user": added.name,
                "files": str(added.folder),
                "device": new.device.id,
                "device_name": new.device.name,
                "enrollment_code": code,
            }
        )
    else:
        print(f"Added user {added.name}; their segments go in {added.folder}/<segment>/")
        print_code(new, code)
    return 0


def run_list(args: argparse.Namespace) -> int:
    root = DataRoot.from_args(args.data).require()
    with Accounts.open(root.path) as accounts:
        web = {a.name: a for a in accounts.web_accounts()}
        use = quota.statuses(accounts, root.path, root.users())
    users = [
        {
            "user": u,
            "segments": root.segments(u),
            "web": {"admin": web[u].admin} if u in web else None,
            "quota": use[u].quota,
            "used": use[u].used,
        }
        for u in root.users()
    ]
    if args.json:
        emit_json({"users": users})
        return 0
    for user in root.users():
        login = web.get(user)
        note = "" if login is None else "\tweb login (admin)" if login.admin else "\tweb login"
        segments = ", ".join(root.segments(user)) or "(no segments)"
        print(f"{user}\t{segments}\t{use[user].text()}{note}")
    return 0


def run_quota(args: argparse.Namespace) -> int:
    root = DataRoot.from_args(args.data).require()
    name = names.check("user", args.name)
    size = quota.parse_size(args.size)
    root.user_dir(name)  # an unknown user is an error, named as every command names it
    with Accounts.open(root.path) as accounts:
        if not accounts.has_user(name):
            with accounts.transaction():
                accounts.add_user(name)  # a user made before accounts existed gets a row
        found = quota.set_quota(accounts, root.path, name, size)
    if args.json:
        emit_json(found.to_json())
    elif found.quota is None:
        print(f"{name} has no quota now; uses {found.text()}")
    else:
        print(f"Quota of {name} set: uses {found.text()}")
    return 0


def _read_password(name: str, from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        return check_web_password(password.removesuffix("\r"))
    if not sys.stdin.isatty():
        raise UsageError("no terminal to ask for the password on; use --password-stdin")
    first = getpass.getpass(f"Web password for {name}: ")
    check_web_password(first)
    if getpass.getpass("The same again: ") != first:
        raise UsageError("the two passwords are not the same; nothing was changed")
    return first


def run_password(args: argparse.Namespace) -> int:
    root = DataRoot.from_args(args.data).require()
    name = names.check("user", args.name)
    root.user_dir(name)  # an unknown user is an error, before asking anything
    digest = hash_web_password(_read_password(name, args.password_stdin))
    with Accounts.open(root.path) as accounts, accounts.transaction():
        created = accounts.web_account(name) is None
        accounts.add_user(name)  # a user made before accounts existed gets a row
        login = accounts.set_web_password(name, digest, admin=args.admin)
    if args.json:
        emit_json({"user": name, "admin": login.admin, "created": created})
    else:
        role = "an administrator" if login.admin else "not an administrator"
        what = "set" if created else "changed; their web sessions are signed out"
        print(f"Web password of {name} {what} ({role})")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    root = DataRoot.from_args(args.data).require()
    name = names.check("user", args.name)
    folder = root.files / name
    repos = root.repos / name
    with Accounts.open(root.path) as accounts:
        if not folder.is_dir() and not accounts.has_user(name):
            root.user_dir(name)  # raises: unknown user
        has_data = (folder.is_dir() and any(folder.iterdir())) or (
            repos.exists() and any(repos.iterdir())
        )
        if has_data and not args.delete_data:
            raise UsageError(
                f"user {name!r} has files or history; pass --delete-data to delete them for good"
            )
        with contextlib.ExitStack() as held:
            # A commit or maintain (the scheduler's, under `run`) writing into a repository
            # while we delete it would fail half-way or leave a fresh repository behind.
            held.enter_context(root.user_lock(name, exclusive=True))
            for path in sorted(repos.glob("*.git")) if repos.is_dir() else []:
                try:
                    held.enter_context(Repository.open(path).lock())
                except RepositoryError as exc:
                    if is_busy(exc):
                        raise BluegrassError(
                            f"{name}/{path.name[:-4]} is busy (a commit is running); try again "
                            "shortly"
                        ) from None
                    # Not a Bluegrass repository (damaged): deleted all the same.
            # Credentials first: should deleting the files fail half-way, nobody can log in
            # to what is left, and running the command again finishes the job.
            accounts.remove_user(name)
            try:
                if folder.is_dir():
                    shutil.rmtree(folder)
                if repos.exists():
                    shutil.rmtree(repos)
            except OSError as exc:
                raise BluegrassError(
                    f"could not delete all of {name}'s data ({exc}); run the command again"
                ) from None
    print(f"Removed user {name}")
    return 0
