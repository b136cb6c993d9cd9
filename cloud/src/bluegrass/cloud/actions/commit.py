"""`bluegrass-cloud commit`: snapshot segments' live trees into their histories."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from bluegrass.cloud import settings
from bluegrass.cloud.accounts import Accounts, Job, now_text
from bluegrass.cloud.datadir import Busy, DataRoot
from bluegrass.core import diskspace, syncmeta, syncspec
from bluegrass.core.cli import emit_json
from bluegrass.core.config import Config
from bluegrass.core.errors import BluegrassError
from bluegrass.core.store import Repository, RepositoryBusy, RepositoryError, parse_date, snapshot


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


def _in_flight(name: bytes) -> str | None:
    # A half-uploaded file waits for the next snapshot; its previous version stays as it was.
    return "upload in progress" if syncspec.is_partial_upload(name) else None


def upload_in_flight(tree: Path) -> str | None:
    """The first file of `tree` (relative, POSIX) still being uploaded, or None."""
    pending = [tree]
    while pending:
        folder = pending.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue  # a folder renamed or removed meanwhile: the commit itself reports it
        for entry in entries:
            if syncspec.is_partial_upload(os.fsencode(entry.name)):
                return Path(entry.path).relative_to(tree).as_posix()
            if entry.is_dir(follow_symlinks=False):
                pending.append(Path(entry.path))
    return None


BUSY = "busy: another commit of this segment is running (the scheduler's?); try again shortly"


def is_busy(exc: BaseException) -> bool:
    """Whether a job failed only because another one holds a lock it needs."""
    return isinstance(exc, Busy | RepositoryBusy)


def commit_one(
    root: DataRoot,
    cfg: Config,
    user: str,
    segment: str,
    when: datetime | None = None,
    *,
    reason: str | None = None,
) -> dict[str, Any]:
    """Snapshot one segment; its result as in `commit --json`. Raises BluegrassError.

    `reason`, if given, is said in the commit message's title ("... before a restore").
    """
    with root.user_lock(user, exclusive=False):
        tree = root.live_tree(user, segment)
        if not tree.is_dir():
            raise BluegrassError(f"live tree {tree} is missing")
        path = root.repo_path(user, segment)
        try:
            repo = Repository.init(path)
        except OSError as exc:  # a traceback is never the answer, a full disk least of all
            if diskspace.is_full(exc):
                raise BluegrassError(diskspace.no_space(path, f"preparing {path}")) from exc
            raise BluegrassError(f"{path}: {exc.strerror}") from exc
        res = snapshot(
            repo,
            tree,
            when=when,
            suspicious_share=settings.suspicious_share(cfg, user, segment),
            label=f"{user}/{segment} {reason}" if reason else f"{user}/{segment}",
            skip=_in_flight,
            # What rclone over sftp could not carry: bits, ns times, links (decision 59).
            adjust=syncmeta.adjust_snapshot,
        )
    return {"user": user, "segment": segment, **res.to_json()}


def summary(result: dict[str, Any]) -> str:
    """One line about a commit's result, for logs and job histories."""
    if result["committed"]:
        text = (
            f"committed {result['commit'][:12]}: {result['added']} added, "
            f"{result['changed']} changed, {result['deleted']} deleted"
        )
    else:
        text = "no change"
    if result["suspicious"]:
        text += f"; SUSPICIOUS: {result['change_share']:.0%} of files deleted or changed"
    if result["skipped"]:
        text += f"; {len(result['skipped'])} skipped"
    if result["unreadable"]:
        text += f"; {len(result['unreadable'])} unreadable (previous versions kept)"
    return text


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
    results = []
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
        emit_json({"segments": results, "errors": problems})
    else:
        for r in results:
            name = f"{r['user']}/{r['segment']}"
            if r["committed"]:
                print(
                    f"{name}: committed {r['commit'][:12]}: {r['added']} added, {r['changed']} "
                    f"changed, {r['deleted']} deleted"
                )
            else:
                print(f"{name}: no change since {str(r['commit'])[:12]}")
            if r["suspicious"]:
                print(
                    f"{name}: WARNING: {r['change_share']:.0%} of files deleted or changed "
                    "(suspicious; the old versions are kept in history)"
                )
            for item in r["skipped"]:
                print(f"{name}: skipped {item['path']} ({item['reason']})")
            for item in r["unreadable"]:
                print(
                    f"{name}: unreadable {item['path']} ({item['reason']}); previous version kept"
                )
        if not targets and not problems:
            print("no segments to commit")
    for p in problems:
        sys.stderr.write(f"bluegrass-cloud: error: {p['user']}/{p['segment']}: {p['error']}\n")
    return 1 if problems else 0
