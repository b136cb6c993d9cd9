"""The cloud's storage quota, as a sync sees it (decision 133).

The cloud serves a user at or over their quota without new bytes: bisync's uploads then fail
with sftp's `"permission denied" (SSH_FX_FAILURE)`, which says nothing of quotas. So the laptop
asks the cloud (bluegrass.laptop.cloudhttp, `GET /api/v1/quota`): before a sync, whether what
it would send fits in what is left (a login made under the quota is not restricted, so only
the laptop can stop one sync from overshooting it), and after a refused upload, whether the
quota is why. Every answer may be missing (an old cloud, plain http beyond the LAN): then the
sync runs as it would have, and the cloud still refuses what does not fit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bluegrass.laptop import guard
from bluegrass.laptop.progress import human_bytes

ACTION = (
    "Delete files you no longer need from the segment (deletions still reach the cloud), or "
    "ask the cloud's administrator for a bigger quota"
)
ACTION_READ_ONLY = (
    "Ask the cloud's administrator to set your quota again (bluegrass-cloud user quota): "
    "files grew on the cloud while over it, so it takes no changes, not even deletions"
)


@dataclass(frozen=True)
class Quota:
    user: str
    quota: int
    used: int
    history: int
    read_only: bool = False  # files grew there while over it: nothing changes until reset

    @classmethod
    def from_answer(cls, answer: dict[str, Any] | None) -> Quota | None:
        """The cloud's answer, if it sets a quota and reads as one."""
        if answer is None:
            return None
        fields = (answer.get("quota"), answer.get("used"), answer.get("history", 0))
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in fields):
            return None
        return cls(str(answer.get("user")), *fields, answer.get("read_only") is True)

    @property
    def over(self) -> bool:
        return self.used >= self.quota

    @property
    def remaining(self) -> int:
        return max(0, self.quota - self.used)

    def line(self) -> str:
        """ "alice uses 812.3 kB of a 500.0 kB quota on the cloud (files and their history;
        history: 12.3 kB)"."""
        return (
            f"{self.user} uses {human_bytes(self.used)} of a {human_bytes(self.quota)} quota "
            f"on the cloud (files and their history; history: {human_bytes(self.history)})"
        )


def growth(folder: Path, listing: dict[str, guard.Entry]) -> int:
    """About how many bytes this sync adds to the cloud from here: the folder's files now,
    less those of the last sync's listing (every file, with no listing yet). Deletions and
    shrunk files count against new ones: the cloud's use is what matters, not the traffic."""
    before = sum(e.size for e in listing.values() if not e.folder)
    now = 0
    for parent, _dirs, files in os.walk(folder):
        for name in files:
            try:
                now += (Path(parent) / name).lstat().st_size
            except OSError:
                continue  # gone meanwhile: not sent either
    return now - before


def refused_upload(errors: list[str]) -> bool:
    """Whether rclone's errors hold the sftp refusal an over-quota login gets."""
    return any('"permission denied"' in e and "SSH_FX" in e for e in errors)
