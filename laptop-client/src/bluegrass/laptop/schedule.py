"""When the daemon syncs a segment next: the interval with jitter, and back-off on failure.

- After a good run: the segment's interval, give or take 10% (jitter), so laptops enrolled
  with one server do not all arrive at once.
- After a failed run (n failures in a row): 1, 2, 4, 8, ... minutes, at most
  [sync] backoff_max_minutes, with the same jitter. A laptop that is offline for a day does
  not hammer the server, and comes back within the cap once it is online.
- A segment another process is syncing is looked at again in a minute.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

JITTER = 0.10
BUSY_SECONDS = 60.0


def delay_seconds(
    *,
    ok: bool,
    failures: int,
    interval_minutes: int,
    backoff_max_minutes: int,
    rng: random.Random | None = None,
) -> float:
    rng = rng or random.Random()  # noqa: S311 - jitter, not secrecy
    if ok:
        base = interval_minutes * 60.0
    else:
        exponent = max(failures - 1, 0)
        base = min(60.0 * 2 ** min(exponent, 20), backoff_max_minutes * 60.0)
    return base * (1 + rng.uniform(-JITTER, JITTER))


def first_due(last_finished: datetime | None, interval_minutes: int, now: datetime) -> datetime:
    """When the daemon, just started, first syncs a segment: now, unless one just ran."""
    if last_finished is None:
        return now
    due = last_finished + timedelta(minutes=interval_minutes)
    return min(max(due, now), now + timedelta(minutes=interval_minutes))
