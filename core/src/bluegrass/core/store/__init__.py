"""The snapshot store: a segment's history as a plain git repository, byte-exact.

repo = Repository.init(path)          # bare repository with Bluegrass's settings
snapshot(repo, folder)                # -> SnapshotResult; commits only when changed
restore(repo, target, at=..., path=...)
repo.log(), repo.resolve(at), repo.verify(), repo.maintain()
"""

from bluegrass.core.store.repository import (
    CommitInfo,
    Repository,
    RepositoryBusy,
    RepositoryError,
    parse_date,
)
from bluegrass.core.store.restore import RestoreResult, restore
from bluegrass.core.store.snapshot import DEFAULT_SUSPICIOUS_SHARE, SnapshotResult, snapshot

__all__ = [
    "DEFAULT_SUSPICIOUS_SHARE",
    "CommitInfo",
    "Repository",
    "RepositoryBusy",
    "RepositoryError",
    "RestoreResult",
    "SnapshotResult",
    "parse_date",
    "restore",
    "snapshot",
]
