"""`bluegrass-cloud verify`: a full integrity check of every repository."""

from __future__ import annotations

import argparse

from bluegrass.cloud import corruption
from bluegrass.cloud.datadir import DataRoot
from bluegrass.core.cli import emit_json
from bluegrass.core.errors import BluegrassError
from bluegrass.core.store import Repository, damage


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "verify",
        help="check every repository's integrity",
        description="Run git fsck (full, strict) on every repository, check Bluegrass's "
        "settings and that the latest manifest matches its tree. Exits 1 if anything is wrong.",
    )
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    root = DataRoot.from_args(args.data).require()
    reports = []
    for user_dir in sorted(p for p in root.repos.iterdir() if p.is_dir()):
        for path in sorted(user_dir.glob("*.git")):
            try:
                problems = Repository.open(path).verify()
            except BluegrassError as exc:
                problems = [str(exc)]
            damaged = [p for p in problems if p.startswith("fsck: ")]
            if damaged:
                # What fsck finds is damage: later jobs refuse to write onto it (decision 220).
                # The object check names the damaged object where fsck names a pack offset.
                found = damage.check_objects(path) + damaged
                corruption.report_damaged(root, user_dir.name, path.name[:-4], found, "verify")
            reports.append(
                {
                    "user": user_dir.name,
                    "segment": path.name[:-4],
                    "ok": not problems,
                    "problems": problems,
                }
            )
    if args.json:
        emit_json({"repositories": reports, "ok": all(r["ok"] for r in reports)})
    else:
        for r in reports:
            name = f"{r['user']}/{r['segment']}"
            print(f"{name}: ok" if r["ok"] else f"{name}: {len(r['problems'])} problem(s)")
            for line in r["problems"]:
                print(f"  {line}")
        bad = sum(not r["ok"] for r in reports)
        print(f"{len(reports)} repositories checked, {bad} with problems")
    return 0 if all(r["ok"] for r in reports) else 1
