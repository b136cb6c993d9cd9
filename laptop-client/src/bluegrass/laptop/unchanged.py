"""Has anything changed on either side of a segment since the last sync that found nothing to do?

Before a sync, the laptop walks its folder and asks the cloud for its live folder's state,
both at once (bluegrass.core.treestate: every entry's path, size, times, inode). When both
equal the states taken *before* the last sync that ended "ok" having moved, deleted and renamed
nothing, rclone bisync is skipped: nothing can have changed since that sync listed both sides,
so it would find nothing to do (docs/decisions.md 56). The states kept are the ones taken
before that sync, never after it, so a change made while it ran shows up next time.

Nothing is skipped when the cloud cannot answer (older cloud, plain http beyond the local
network, any error), when either walk was racy, on the first sync, a --resync, a
--confirm-deletes, a change of excludes, or a run due for bisync's daily --check-sync.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from bluegrass.core import treestate
from bluegrass.core.treestate import TreeState
from bluegrass.laptop.cloudhttp import CloudHTTP
from bluegrass.laptop.settings import Segment, Settings


@dataclass(frozen=True)
class Sides:
    local: TreeState
    remote: TreeState

    @property
    def keepable(self) -> bool:
        return not (self.local.racy or self.remote.racy)

    def same_as(self, kept: Sides | None) -> bool:
        return (
            kept is not None
            and self.local.digest == kept.local.digest
            and self.remote.digest == kept.remote.digest
        )

    def to_json(self) -> dict[str, object]:
        return {"local": self.local.to_json(), "remote": self.remote.to_json()}

    @classmethod
    def from_json(cls, data: object) -> Sides | None:
        if not isinstance(data, dict):
            return None
        local = TreeState.from_json(data.get("local"))
        remote = TreeState.from_json(data.get("remote"))
        if local is None or remote is None:
            return None
        return cls(local, remote)


def look(settings: Settings, segment: Segment) -> Sides | None:
    """Both sides' state now, or None if either cannot be had (the sync then runs in full)."""
    cloud = CloudHTTP(settings)
    if not cloud.usable():
        return None
    answer: list[TreeState | None] = []
    # The cloud walks its folder while we walk ours.
    asking = threading.Thread(
        target=lambda: answer.append(cloud.segment_state(segment.name)), daemon=True
    )
    asking.start()
    try:
        local: TreeState | None = treestate.walk(segment.path)
    except OSError:
        local = None
    asking.join()
    remote = answer[0] if answer else None
    if local is None or remote is None:
        return None
    return Sides(local, remote)
