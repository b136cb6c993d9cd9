"""The cloud's one place that says "this repository is known to be damaged".

Whatever meets damage first (a commit's own check, `maintain`, `verify`, a restore, the git
HTTP serving) calls `report_damaged`: the mark goes into the repository (every later job
refuses to write onto it) and a failed `integrity` job goes into the job history (the
dashboard reads it); the caller's error line and the scheduler's log say it. Notifications
hook in here (issue 16 part 1). `repair` is the only way the mark is cleared, and only once
a full verify passes.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from bluegrass.cloud.accounts import Accounts
from bluegrass.cloud.database import now_text
from bluegrass.cloud.datadir import DataRoot
from bluegrass.cloud.jobhistory import Job
from bluegrass.core.errors import BluegrassError
from bluegrass.core.store import damage
from bluegrass.core.store.damage import Damage, RepositoryDamaged

KIND = "integrity"

# What git says when it reads a damaged object (LC_ALL=C): restore's "object … ended early".
_GIT_SAYS = (
    "ended early",
    "inflate",
    "corrupt",
    "bad object",
    "hash mismatch",
    "unable to unpack",
    "is not a valid object",
    "packed object",
    "missing blob",
    "missing tree",
    "unable to read",
)


def looks_damaged(text: str) -> bool:
    """Given a git failure's text, return whether it says an object is damaged or missing."""
    lowered = text.lower()
    return any(phrase in lowered for phrase in _GIT_SAYS)


def known_damage(root: DataRoot, user: str, segment: str) -> Damage | None:
    """Given a user's segment, return the damage recorded in its repository, or None."""
    return damage.read_mark(root.repo_path(user, segment))


def report_damaged(
    root: DataRoot, user: str, segment: str, problems: list[str], found_by: str
) -> Damage:
    """Given what was found wrong with a user's segment's repository and by what, mark the
    repository damaged, record it in the job history and the log, and return the damage.
    Never raises: it is called while another failure is being reported."""
    path = root.repo_path(user, segment)
    known = damage.read_mark(path)
    found = known or damage.write_mark(path, problems, found_by)
    name = f"{user}/{segment}"
    if known is None:
        # The caller says it (its error line, the scheduler's log): recorded here once.
        _record(
            root.path,
            Job(KIND, user, segment, None, now_text(), now_text(), "error", found.describe(name)),
        )
    return found


def cleared(root: DataRoot, user: str, segment: str, detail: str) -> None:
    """Record that the segment's repository was healed (its mark already removed)."""
    _record(root.path, Job(KIND, user, segment, None, now_text(), now_text(), "ok", detail))


def refuse_if_damaged(root: DataRoot, user: str, segment: str) -> None:
    """Raise RepositoryDamaged if the segment's repository is known to be damaged."""
    found = known_damage(root, user, segment)
    if found is not None:
        raise RepositoryDamaged(found.describe(f"{user}/{segment}"))


# A commit checks loose objects only while they are few: the daily maintain packs them after
# each daily commit (and inflates every one as it does), so more than this many means a big
# import not yet maintained, where the check would cost seconds per commit (decision 224).
COMMIT_LOOSE_LIMIT = 5000


def check_before_writing(
    root: DataRoot, user: str, segment: str, found_by: str, loose_limit: int | None = None
) -> float:
    """Refuse if known damaged; else check the stored objects (packs by CRC, loose objects by
    hash, up to `loose_limit` of them) and mark and refuse if any is damaged. Returns the
    seconds the check took."""
    refuse_if_damaged(root, user, segment)
    path = root.repo_path(user, segment)
    started = time.monotonic()
    if (path / "HEAD").is_file():
        problems = damage.check_objects(path, loose_limit)
        if problems:
            found = report_damaged(root, user, segment, problems, found_by)
            raise RepositoryDamaged(found.describe(f"{user}/{segment}"))
    return time.monotonic() - started


def _record(data: Path, job: Job) -> None:
    try:
        with Accounts.open(data) as accounts:
            accounts.record_job(job)
    except BluegrassError as exc:
        sys.stderr.write(f"bluegrass-cloud: the damage is not in the job history: {exc}\n")
