"""`bluegrass-cloud kit`: print a recovery kit (a PDF) for a user or for the whole server."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from bluegrass.cloud import kit
from bluegrass.cloud.datadir import DataRoot
from bluegrass.cloud.kit import content, printed, split
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
    p.add_argument("--out", metavar="FILE.pdf", help="where to write the PDF")
    p.add_argument(
        "--split",
        metavar="K-of-N",
        help="leave the secrets off the kit and write N sheets (FILE-share-I-of-N.pdf), one "
        "per trusted person, any K of which give them back (SLIP-39 words)",
    )
    p.add_argument(
        "--combine",
        metavar="FILE",
        help="print the secrets from K split sheets' words (their text in FILE, - for stdin)",
    )
    p.add_argument("--force", action="store_true", help="replace FILE.pdf if it exists")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.combine is not None:
        if args.user is not None or args.server or args.out or args.split:
            raise UsageError("kit --combine FILE: takes no USER, --server, --out or --split")
        return _combine(args.combine)
    if args.out is None:
        raise UsageError("kit: --out FILE.pdf is required")
    if args.split is not None:
        return _split(args, split.parse_scheme(args.split))
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
    if fingerprint is not None:
        printed.record(root.path, args.user, fingerprint)  # the web page then knows it
    if args.json:
        emit_json({"out": str(out), "user": args.user, "fingerprint": fingerprint})
    else:
        print(f"Wrote {out} ({len(data)} bytes). It holds secrets: print it, then delete it.")
    return 0


def _split(args: argparse.Namespace, scheme: split.Scheme) -> int:
    if args.server == (args.user is not None):
        raise UsageError("kit: expected either a USER or --server (not both, not neither)")
    root = DataRoot.from_args(args.data).require()
    whole = content.server_kit(root.path) if args.server else content.user_kit(root.path, args.user)
    from bluegrass.cloud.kit import sheets  # with fpdf2: 0.3 s to import, so only here

    made = sheets.split_kit(whole, scheme)
    written = sheets.save(made, Path(args.out), force=args.force)
    if not args.server:
        printed.record(root.path, args.user, whole.fingerprint)
    if args.json:
        emit_json(
            {
                "out": str(written[0]),
                "sheets": [str(p) for p in written[1:]],
                "split": str(scheme),
                "user": args.user,
                "fingerprint": whole.fingerprint,
            }
        )
    else:
        print(f"Wrote {written[0]}, without its secrets, and {scheme.count} sheets:")
        for path in written[1:]:
            print(f"  {path}")
        print(f"Any {scheme.threshold} sheets give the secrets back. Print them, give one to each")
        print("trusted person, then delete the files.")
    return 0


def _combine(source: str) -> int:
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--combine {source}: cannot read it: {exc}") from None
    for name, value in split.recover(split.parse_shares(text)).items():
        print(f"{name}={shlex.quote(value)}")
    return 0
