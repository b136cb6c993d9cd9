"""Which segments' daily commits are stuck: failing, or not run when they should have.

A commit that fails is recorded in the job history (`jobs`) and waits for the next day
(decision 14); a commit that keeps waiting (a repository held by a commit that never ends)
records only "busy". Neither is visible from the sync endpoint's state, so `GET /health`
and the dashboard ask this module (decision 72).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from bluegrass.cloud import settings
from bluegrass.cloud.accounts import Accounts
from bluegrass.cloud.datadir import DataRoot
from bluegrass.cloud.scheduler import last_occurrence
from bluegrass.core.config import Config

# Beyond its wait for uploads, a daily commit this late has not merely been slow to start:
# the scheduler looks every 30 s and retries a busy segment within 5 minutes.
OVERDUE_GRACE = timedelta(hours=1)


@dataclass(frozen=True)
class StuckCommit:
    user: str
    segment: str
    failing: bool  # the last commit failed; else the one due has not run in time
    detail: str  # a sentence for the segment's owner

    @property
    def name(self) -> str:
        return f"{self.user}/{self.segment}"


def stuck_commits(
    root: DataRoot, accounts: Accounts, cfg: Config, now: datetime | None = None
) -> list[StuckCommit]:
    """Every segment whose commits fail, or whose daily commit is overdue; `now` is naive
    local time, as the schedule is."""
    now = now or datetime.now()
    found = []
    for user in root.users():
        for segment in root.segments(user):
            if not root.live_tree(user, segment).is_dir():
                continue  # nothing to commit: the history is all there is
            stuck = _stuck(accounts, cfg, user, segment, now)
            if stuck is not None:
                found.append(stuck)
    return found


def _stuck(
    accounts: Accounts, cfg: Config, user: str, segment: str, now: datetime
) -> StuckCommit | None:
    last = accounts.last_job("commit", user, segment)
    if last is None:
        return None  # a new segment: its first commit comes at the scheduler's next look
    if last.outcome == "error":
        return StuckCommit(
            user, segment, True, f"its last snapshot failed ({last.finished}): {last.detail}"
        )
    due = last_occurrence(now, settings.commit_at(cfg, user, segment))
    wait = timedelta(minutes=cfg.get("schedule.upload_wait_minutes"))
    if now - due <= wait + OVERDUE_GRACE:
        return None
    if accounts.done_for("commit", user, segment, due.strftime("%Y-%m-%dT%H:%M")):
        return None
    late = (now - due).total_seconds() / 3600
    why = f"; last try: {last.detail}" if last.outcome == "busy" else ""
    return StuckCommit(
        user,
        segment,
        False,
        f"its daily snapshot due {due:%Y-%m-%d %H:%M} has not been taken ({late:.1f} h late){why}",
    )
