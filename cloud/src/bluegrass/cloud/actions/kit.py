"""`bluegrass-cloud kit`: print a recovery kit (a PDF) for a user or for the whole server."""

from __future__ import annotations

import argparse
from pathlib import Path

from bluegrass.cloud import kit
from bluegrass.cloud.datadir import DataRoot
from bluegrass.core.cli import emit_json
from bluegrass.core.errors import UsageError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "kit",
        help="write a printable recovery kit (PDF)",
        description="Write a recovery kit: one or two printed pages, in plain words, that say "
        "where the copies are and how to get every file back with git and rclone alone, with "
        "the secrets that open the replica (as text and QR codes). USER's kit opens that "
        "user's area of the replica; --server's opens every user's. It holds secrets: print "
        "it, keep it safe, delete the file.",
    )
    p.add_argument("user", nargs="?", metavar="USER", help="the user whose kit to write")
    p.add_argument(
        "--server", action="store_true", help="the administrator's kit, for the whole server"
    )
    p.add_argument("--out", required=True, metavar="FILE.pdf", help="where to write the PDF")
    p.add_argument("--force", action="store_true", help="replace FILE.pdf if it exists")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.server == (args.user is not None):
        raise UsageError("kit: expected either a USER or --server (not both, not neither)")
    root = DataRoot.from_args(args.data).require()
    out = Path(args.out)
    if args.server:
        data = kit.server_kit_pdf(root.path)
        fingerprint = None
    else:
        data = kit.user_kit_pdf(root.path, args.user)
        fingerprint = kit.secrets_fingerprint(root.path, args.user)
    kit.save(data, out, force=args.force)
    if args.json:
        emit_json({"out": str(out), "user": args.user, "fingerprint": fingerprint})
    else:
        print(f"Wrote {out} ({len(data)} bytes). It holds secrets: print it, then delete it.")
    return 0
