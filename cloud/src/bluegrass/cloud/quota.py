"""Per-user storage quotas (decisions 130-134).

An administrator gives a user a quota (`bluegrass-cloud user quota NAME SIZE|none`). What
counts is everything the user occupies on this server: their live files (DATA/files/<user>/)
and their histories (DATA/repos/<user>/), because both are this disk's bytes and the histories
grow with every changed version. Use is measured by a walk of both (lstat sizes, links not
followed) and remembered in the database with its time.

A user at or over their quota is served by the sync endpoint through a union whose only
writable upstream takes no new files (rclone's `:nc`): they can still list, download, delete
and rename, but a new file, an upload through a temporary name, a new folder or a server-side
copy is refused (`Decision.backend()` in bluegrass.cloud.authproxy). That union still lets an
existing file be overwritten in place, which no laptop does: a user whose live files grow by
more than GROWTH while restricted is served read-only until an administrator sets their quota
again (decision 132). rclone keeps a login's backend for minutes, so whenever a user's
restriction changes the credentials revision is bumped and `run` restarts the endpoint
(decision 12's mechanism).

Domain code: returns dataclasses; `actions/user.py` prints them.
"""

from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from bluegrass.cloud.credentials import Credentials, StoredUsage
from bluegrass.core.errors import UsageError

# A remembered use older than this is measured again when asked for (the dashboard, the
# scheduler's round). Logins and the device API measure afresh, so the decisions that let
# bytes in never rest on this old a number. A walk costs ~0.4 s per 140k files with a warm
# cache (decision 131).
MAX_AGE = 300.0
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)B?", re.IGNORECASE)
_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
# How the sync endpoint serves a user (the `restricted` column of `usage`).
OPEN, NO_NEW_FILES, READ_ONLY = 0, 1, 2
# What the auth log says of a restricted login.
RESTRICTED = {
    NO_NEW_FILES: "over quota: served without new files",
    READ_ONLY: "over quota and grown since: served read-only",
}
# How much a restricted user's live files may grow (in-place overwrites, a restore from the
# web) before they are served read-only.
GROWTH = 16 * 10**6
EXPECTED = "a size such as 500M, 50G or 2T (decimal units: K, M, G, T), or none"


def size_text(size: int) -> str:
    """Bytes for a person, in the panel's decimal units ("812.3 KB"). Not the panel's own
    function: importing the panel would cost every login's proxy process ~50 ms."""
    if size < 1000:
        return f"{size} bytes"
    exponent = min(4, int(math.log10(size) // 3))
    return f"{size / 1000**exponent:.1f} {('KB', 'MB', 'GB', 'TB')[exponent - 1]}"


def parse_size(text: str) -> int | None:
    """Given "50G", "500M", "1.5T", "1000" (bytes) or "none", return bytes or None (no
    quota). Raise UsageError naming what was expected."""
    if text.strip().lower() == "none":
        return None
    found = _SIZE.fullmatch(text.strip())
    if found is None:
        raise UsageError(f"invalid size {text!r}: expected {EXPECTED}")
    size = int(float(found[1]) * _UNITS[found[2].upper()])
    if size <= 0:
        raise UsageError(f"invalid size {text!r}: expected {EXPECTED}, more than zero")
    return size


@dataclass(frozen=True)
class Usage:
    files: int
    history: int
    measured: float

    @property
    def total(self) -> int:
        return self.files + self.history


@dataclass(frozen=True)
class QuotaStatus:
    user: str
    quota: int | None  # bytes; None: no quota
    usage: Usage
    restriction: int = OPEN  # how the sync endpoint serves them now
    floor: int | None = None  # the fewest live bytes seen since restricted

    @property
    def used(self) -> int:
        return self.usage.total

    @property
    def over(self) -> bool:
        """At or over the quota: the endpoint takes no new bytes from this user."""
        return self.quota is not None and self.used >= self.quota

    @property
    def remaining(self) -> int | None:
        return None if self.quota is None else max(0, self.quota - self.used)

    def text(self) -> str:
        """ "812.3 KB of 500.0 KB (over)", or "812.3 KB (no quota)"."""
        if self.quota is None:
            return f"{size_text(self.used)} (no quota)"
        shown = f"{size_text(self.used)} of {size_text(self.quota)}"
        if self.restriction == READ_ONLY:
            return shown + " (over, read-only)"
        return shown + " (over)" if self.over else shown

    def to_json(self) -> dict[str, object]:
        return {
            "user": self.user,
            "quota": self.quota,
            "used": self.used,
            "files": self.usage.files,
            "history": self.usage.history,
            "remaining": self.remaining,
            "over": self.over,
            "read_only": self.restriction == READ_ONLY,
            "measured": self.usage.measured,
        }


def _bytes_under(folder: Path) -> int:
    """Bytes of every file under `folder` (lstat sizes; links are neither followed nor
    counted beyond their own entry). Entries that vanish while walking are skipped."""
    total = 0
    stack = [os.fspath(folder)]
    while stack:
        try:
            entries = os.scandir(stack.pop())
        except OSError:
            continue
        with entries:
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    else:
                        total += entry.stat(follow_symlinks=False).st_size
                except OSError:
                    continue
    return total


def measure(data_root: Path, user: str) -> Usage:
    """Walk the user's live files and histories now."""
    return Usage(
        _bytes_under(data_root / "files" / user),
        _bytes_under(data_root / "repos" / user),
        time.time(),
    )


def status(db: Credentials, data_root: Path, user: str, *, max_age: float = MAX_AGE) -> QuotaStatus:
    """Given the accounts, the data root and a user, return their use against their quota,
    measured afresh when the remembered one is older than `max_age` seconds. When a fresh
    measure changes how the user must be served, the sync endpoint is restarted (see above)."""
    if not db.has_user(user):
        # A folder made before the database knew users: no quota, and nowhere to remember.
        return QuotaStatus(user, None, measure(data_root, user))
    stored = db.stored_usage(user)
    fresh = stored is None or time.time() - stored.measured >= max_age
    if stored is None or fresh:
        usage = measure(data_root, user)
    else:
        usage = Usage(stored.files, stored.history, stored.measured)
    found = _standing(user, db.quota(user), usage, stored)
    # Compared even on a remembered use: a login may have measured it since (and a login
    # leaves the restriction as it was).
    was = stored.restricted if stored is not None else OPEN
    if stored is None or fresh or was != found.restriction or stored.floor != found.floor:
        db.store_usage(user, _stored(found), restart=was != found.restriction)
    return found


def _standing(
    user: str, quota: int | None, usage: Usage, stored: StoredUsage | None
) -> QuotaStatus:
    """How `user` must be served, given their quota, their use now and what was remembered."""
    found = QuotaStatus(user, quota, usage)
    if not found.over:
        return found
    was = stored.restricted if stored is not None else OPEN
    if stored is None or was == OPEN or stored.floor is None:
        return QuotaStatus(user, quota, usage, NO_NEW_FILES, usage.files)
    floor = min(stored.floor, usage.files)
    # Read-only stays until `set_quota`: getting under by deleting is what it takes away.
    grown = was == READ_ONLY or usage.files > floor + GROWTH
    return QuotaStatus(user, quota, usage, READ_ONLY if grown else NO_NEW_FILES, floor)


def for_device(db: Credentials, data_root: Path, user: str) -> QuotaStatus:
    """What the device API answers (httpspec.QUOTA_PATH): a user with a quota is measured now,
    as their laptop asks before a sync (may it send this much?) and after one that changed
    something (has the restriction changed?); a user without one gets the remembered use."""
    max_age = MAX_AGE if db.quota(user) is None else 0.0
    return status(db, data_root, user, max_age=max_age)


def without_new_bytes(backend: dict[str, str], restriction: int) -> dict[str, str]:
    """Given the local backend a login is served (bluegrass.cloud.authproxy), return a union
    whose one writable upstream is that folder tagged `:nc` (no create): listing, reading,
    deleting and renaming work; a new file, an upload through a temporary name, a new folder
    or a server-side copy is sftp's "permission denied" (decision 132). READ_ONLY tags it
    `:ro` instead: nothing changes. A union needs two upstreams: the other is an empty,
    read-only in-memory one."""
    assert backend["type"] == "local"
    settings = {k: v for k, v in backend.items() if k != "type" and not k.startswith("_")}
    options = ",".join(f"{key}={value}" for key, value in settings.items())
    tag = "ro" if restriction == READ_ONLY else "nc"
    folder = f":local,{options}:{backend['_root']}:{tag}"
    # The list is split on spaces, CSV style: quoting keeps a data root with spaces whole.
    quoted = '"' + folder.replace('"', '""') + '"'
    return {"type": "union", "_root": "", "upstreams": f"{quoted} :memory::ro"}


def restricted_at_login(data_root: Path, user: str) -> int:
    """How a new login of `user` must be served (OPEN, NO_NEW_FILES, READ_ONLY): measured now,
    for a user who has a quota (nobody else is walked). The remembered restriction is left as
    it was: it says what logins rclone may still hold, which only `status` and `set_quota`
    settle, by restarting the endpoint. Its own connection: the login checker's may be in any
    state, and this needs nothing of it."""
    with Credentials.open(data_root) as db:
        quota = db.quota(user)
        if quota is None:
            return OPEN
        usage = measure(data_root, user)
        stored = db.stored_usage(user)
        found = _standing(user, quota, usage, stored)
        was = stored.restricted if stored is not None else OPEN
        floor = found.floor if was != OPEN else None
        db.store_usage(user, StoredUsage(usage.files, usage.history, usage.measured, was, floor))
    return found.restriction


def set_quota(db: Credentials, data_root: Path, user: str, quota: int | None) -> QuotaStatus:
    """Set (or with None, remove) a known user's quota and return their use against it. The
    sync endpoint restarts, so the new quota holds for logins already made too."""
    if not db.has_user(user):
        raise UsageError(f"unknown user {user!r} (see: bluegrass-cloud user list)")
    # A fresh start: whatever growth made them read-only is the administrator's to weigh.
    found = _standing(user, quota, measure(data_root, user), None)
    with db.transaction():
        db.set_quota(user, quota)
    db.store_usage(user, _stored(found))
    return found


def statuses(
    db: Credentials, data_root: Path, users: list[str], *, max_age: float = MAX_AGE
) -> dict[str, QuotaStatus]:
    return {user: status(db, data_root, user, max_age=max_age) for user in users}


def refresh(db: Credentials, data_root: Path) -> list[QuotaStatus]:
    """The scheduler's round: re-measure users with a quota whose use is older than MAX_AGE,
    so that a restriction changed by uploads or deletions through a login rclone still holds
    (another device's, a raw client's) is settled within minutes."""
    return [status(db, data_root, user) for user, quota in db.quotas().items() if quota is not None]


def _stored(found: QuotaStatus) -> StoredUsage:
    usage = found.usage
    return StoredUsage(usage.files, usage.history, usage.measured, found.restriction, found.floor)
