"""Committing a segment's live tree into its history, and what callers need to know about it.

Used by `bluegrass-cloud commit`, the scheduler, the web interface's "snapshot now" jobs and
its restores; none of them goes through the command line to get here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bluegrass.cloud import corruption, settings
from bluegrass.cloud.datadir import Busy, DataRoot
from bluegrass.core import diskspace, syncmeta, syncspec
from bluegrass.core.config import Config
from bluegrass.core.errors import BluegrassError
from bluegrass.core.store import Repository, RepositoryBusy, SnapshotResult, snapshot
from bluegrass.core.store.damage import RepositoryDamaged
from bluegrass.core.store.git import GitError

BUSY = "busy: another commit of this segment is running (the scheduler's?); try again shortly"


@dataclass(frozen=True)
class SegmentCommit:
    """One segment's commit: whose it is, and what the snapshot found."""

    user: str
    segment: str
    snapshot: SnapshotResult

    def to_json(self) -> dict[str, object]:
        return {"user": self.user, "segment": self.segment, **self.snapshot.to_json()}


def walk_tree(tree: Path) -> Iterator[os.DirEntry[str]]:
    """Given a live tree, return its entries, depth first, never following a link.

    A folder that cannot be listed is passed over: renamed or removed meanwhile, and the
    commit itself reports what it could not read.
    """
    pending = [tree]
    while pending:
        folder = pending.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            yield entry
            try:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(Path(entry.path))
            except OSError:
                continue


def is_upload(entry: os.DirEntry[str]) -> bool:
    """Given an entry of a live tree, return whether it is a file rclone is still writing."""
    return syncspec.is_partial_upload(os.fsencode(entry.name))


# rclone gives up a transfer that moves nothing for 5 minutes (--timeout): a partial file not
# written for twice that has no writer any more (a laptop switched off mid-file, a killed sync).
DEAD_UPLOAD_SECONDS = 600.0


def upload_in_flight(tree: Path, now: float | None = None) -> str | None:
    """Given a live tree, return its first file still being uploaded (relative, POSIX), or
    None. A partial file nobody has written to for DEAD_UPLOAD_SECONDS is not in flight."""
    cutoff = (time.time() if now is None else now) - DEAD_UPLOAD_SECONDS
    for entry in walk_tree(tree):
        if not is_upload(entry):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                continue
        except OSError:
            continue  # finished (renamed into place) meanwhile
        return Path(entry.path).relative_to(tree).as_posix()
    return None


def _in_flight(name: bytes) -> str | None:
    # A half-uploaded file waits for the next snapshot; its previous version stays as it was.
    return "upload in progress" if syncspec.is_partial_upload(name) else None


def is_busy(exc: BaseException) -> bool:
    """Given a job's exception, return whether it failed only because another job holds a
    lock it needs."""
    return isinstance(exc, Busy | RepositoryBusy)


def commit_one(
    root: DataRoot,
    cfg: Config,
    user: str,
    segment: str,
    when: datetime | None = None,
    *,
    reason: str | None = None,
) -> SegmentCommit:
    """Given a data root, its settings and a user's segment, snapshot the segment's live tree
    into its history and return what was committed. Raise BluegrassError if the live tree is
    missing, the repository cannot be made (a full disk named as such) or is busy.

    `reason`, if given, is said in the commit message's title ("... before a restore").
    """
    with root.user_lock(user, exclusive=False):
        tree = root.live_tree(user, segment)
        if not tree.is_dir():
            raise BluegrassError(f"live tree {tree} is missing")
        path = root.repo_path(user, segment)
        # Never onto a damaged history: its new snapshots would share the damaged objects
        # (git stores an object once), and a mirror fetching them fails (decision 220).
        corruption.check_before_writing(
            root, user, segment, "a commit's object check", corruption.COMMIT_LOOSE_LIMIT
        )
        try:
            repo = Repository.init(path)
        except OSError as exc:  # a traceback is never the answer, a full disk least of all
            if diskspace.is_full(exc):
                raise BluegrassError(diskspace.no_space(path, f"preparing {path}")) from exc
            raise BluegrassError(f"{path}: {exc.strerror}") from exc
        try:
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
        except GitError as exc:
            if not corruption.looks_damaged(str(exc)):
                raise
            found = corruption.report_damaged(root, user, segment, [str(exc)], "a commit")
            raise RepositoryDamaged(found.describe(f"{user}/{segment}")) from None
    return SegmentCommit(user, segment, res)


def summary(result: SegmentCommit) -> str:
    """Given a commit's result, return one line about it, for logs and job histories."""
    snap = result.snapshot
    if snap.committed:
        text = (
            f"committed {str(snap.commit)[:12]}: {snap.added} added, "
            f"{snap.changed} changed, {snap.deleted} deleted"
        )
    else:
        text = "no change"
    if snap.suspicious:
        text += f"; SUSPICIOUS: {round(snap.change_share, 4):.0%} of files deleted or changed"
    if snap.skipped:
        text += f"; {len(snap.skipped)} skipped"
    if snap.unreadable:
        text += f"; {len(snap.unreadable)} unreadable (previous versions kept)"
    return text
