"""`bluegrass-cloud user add|list|remove`: the people whose files this server keeps."""

from __future__ import annotations

import argparse
import contextlib
import shutil

from bluegrass.cloud import hostkey, settings
from bluegrass.cloud.accounts import Accounts, check_device_name
from bluegrass.cloud.actions.commit import is_busy
from bluegrass.cloud.actions.device import enrollment_code, print_code
from bluegrass.cloud.datadir import DataRoot
from bluegrass.core import names
from bluegrass.core.cli import emit_json
from bluegrass.core.errors import BluegrassError, UsageError
from bluegrass.core.store import Repository, RepositoryError


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


def run_add(args: argparse.Namespace) -> int:
    root = DataRoot.from_args(args.data).require()
    name = names.check("user", args.name)
    check_device_name(args.device_name)
    folder = root.files / name
    if folder.exists() or folder.is_symlink():
        raise UsageError(f"user {name!r} already exists")
    settings.load(root.path)  # a broken config must stop us before anything is written
    hostkey.ensure(root.path)
    with Accounts.open(root.path) as accounts:
        if accounts.has_user(name):
            # Devices left from a user whose folder was deleted by hand must not open the
            # new user's files.
            raise UsageError(
                f"user {name!r} has no folder but still has devices; remove them first: "
                f"bluegrass-cloud user remove {name}"
            )
        # The folder and the rows appear together: the rows commit only if mkdir worked, and
        # the folder goes again if the commit fails.
        made = False
        try:
            with accounts.transaction():
                new = accounts.new_device(name, args.device_name)
                code = enrollment_code(root, new)
                folder.mkdir()
                made = True
        except BaseException:
            if made and not accounts.has_user(name):
                folder.rmdir()
            raise
    if args.json:
        emit_json(
            {
                "user": name,
                "files": str(folder),
                "device": new.device.id,
                "device_name": new.device.name,
                "enrollment_code": code,
            }
        )
    else:
        print(f"Added user {name}; their segments go in {folder}/<segment>/")
        print_code(new, code)
    return 0


def run_list(args: argparse.Namespace) -> int:
    root = DataRoot.from_args(args.data).require()
    users = [{"user": u, "segments": root.segments(u)} for u in root.users()]
    if args.json:
        emit_json({"users": users})
    else:
        for u in users:
            print(f"{u['user']}\t{', '.join(u['segments']) or '(no segments)'}")
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
