"""`bluegrass-cloud commit`: snapshot segments' live trees into their histories."""

from __future__ import annotations

import argparse
import sys

from bluegrass.cloud import settings
from bluegrass.cloud.accounts import Accounts
from bluegrass.cloud.commits import BUSY, SegmentCommit, commit_one, is_busy, summary
from bluegrass.cloud.database import now_text
from bluegrass.cloud.datadir import DataRoot
from bluegrass.cloud.jobhistory import Job
from bluegrass.core.cli import emit_json
from bluegrass.core.errors import BluegrassError
from bluegrass.core.store import RepositoryError, parse_date


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "commit",
        help="snapshot live trees into their histories",
        description="Snapshot DATA/files/USER/SEGMENT/ into DATA/repos/USER/SEGMENT.git for "
        "every segment, or only those chosen. Nothing is committed for a segment that did not "
        "change; the check is still recorded.",
    )
    p.add_argument("--user", help="only this user's segments")
    p.add_argument("--segment", help="only this segment (needs --user)")
    p.add_argument(
        "--date",
        help="record the snapshot as taken at this date (for imports and the demo; "
        "it may not be earlier than the last snapshot)",
    )
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(handler=run)


def _record(root: DataRoot, job: Job) -> str | None:
    """Add the outcome to the job history; why that failed, if it did.

    Beside the scheduler's (scheduled_for NULL: on demand), so that a commit by hand after a
    repair clears the segment's failing state on /health and the dashboard (decision 72).
    """
    try:
        with Accounts.open(root.path) as accounts:
            accounts.record_job(job)
    except BluegrassError as exc:
        return str(exc)  # the commit's own outcome is what must be said first
    return None


def run(args: argparse.Namespace) -> int:
    root = DataRoot.from_args(args.data).require()
    cfg = settings.load(root.path)
    if args.segment and not args.user:
        raise BluegrassError("--segment needs --user")
    when = parse_date(args.date) if args.date else None
    users = [args.user] if args.user else root.users()
    targets: list[tuple[str, str]] = []
    problems: list[dict[str, str]] = []
    for user in users:
        if args.segment:
            root.live_tree(user, args.segment)  # validates the name
            targets.append((user, args.segment))
            continue
        targets += [(user, s) for s in root.segments(user)]
        problems += [
            {"user": s.user, "segment": s.name, "error": s.reason} for s in root.strays(user)
        ]
    results: list[SegmentCommit] = []
    for user, segment in targets:
        started = now_text()
        try:
            result = commit_one(root, cfg, user, segment, when)
        except BluegrassError as exc:
            error = BUSY if isinstance(exc, RepositoryError) and is_busy(exc) else str(exc)
            if not is_busy(exc):
                job = Job("commit", user, segment, None, started, now_text(), "error", error)
                unrecorded = _record(root, job)
                if unrecorded:
                    error += f" (not recorded in the job history: {unrecorded})"
            problems.append({"user": user, "segment": segment, "error": error})
            continue
        results.append(result)
        detail = f"on demand from the command line: {summary(result)}"
        job = Job("commit", user, segment, None, started, now_text(), "ok", detail)
        unrecorded = _record(root, job)
        if unrecorded:
            error = f"committed, but not recorded in the job history: {unrecorded}"
            problems.append({"user": user, "segment": segment, "error": error})
    if args.json:
        emit_json({"segments": [r.to_json() for r in results], "errors": problems})
    else:
        for r in results:
            name, snap = f"{r.user}/{r.segment}", r.snapshot
            if snap.committed:
                print(
                    f"{name}: committed {str(snap.commit)[:12]}: {snap.added} added, "
                    f"{snap.changed} changed, {snap.deleted} deleted"
                )
            else:
                print(f"{name}: no change since {str(snap.commit)[:12]}")
            if snap.suspicious:
                print(
                    f"{name}: WARNING: {round(snap.change_share, 4):.0%} of files deleted or "
                    "changed (suspicious; the old versions are kept in history)"
                )
            for path, reason in snap.skipped:
                print(f"{name}: skipped {path} ({reason})")
            for path, reason in snap.unreadable:
                print(f"{name}: unreadable {path} ({reason}); previous version kept")
        if not targets and not problems:
            print("no segments to commit")
    for p in problems:
        sys.stderr.write(f"bluegrass-cloud: error: {p['user']}/{p['segment']}: {p['error']}\n")
    return 1 if problems else 0
