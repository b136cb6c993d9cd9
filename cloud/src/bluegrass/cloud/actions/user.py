"""`bluegrass-cloud user add|list|remove`: the people whose files this server keeps."""

from __future__ import annotations

import argparse
import shutil

from bluegrass.cloud.datadir import DataRoot
from bluegrass.core import names
from bluegrass.core.cli import emit_json
from bluegrass.core.errors import UsageError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("user", help="add, list or remove users", description=__doc__)
    usub = p.add_subparsers(metavar="ACTION")
    add = usub.add_parser(
        "add", help="add a user", description="Add a user: creates DATA/files/NAME/."
    )
    add.add_argument("name", metavar="NAME")
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
    folder = root.files / name
    if folder.exists():
        raise UsageError(f"user {name!r} already exists")
    folder.mkdir()
    if args.json:
        emit_json({"user": name, "files": str(folder)})
    else:
        print(f"Added user {name}; their segments go in {folder}/<segment>/")
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
    folder = root.user_dir(args.name)
    repos = root.repos / args.name
    has_data = any(folder.iterdir()) or (repos.exists() and any(repos.iterdir()))
    if has_data and not args.delete_data:
        raise UsageError(
            f"user {args.name!r} has files or history; pass --delete-data to delete them for good"
        )
    shutil.rmtree(folder)
    if repos.exists():
        shutil.rmtree(repos)
    print(f"Removed user {args.name}")
    return 0
