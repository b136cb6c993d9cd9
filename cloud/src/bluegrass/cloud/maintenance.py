"""Packing a repository and refreshing its commit-graph (`maintain`, and the scheduler after
the daily commits)."""

from __future__ import annotations

from pathlib import Path

from bluegrass.core.store import Repository
from bluegrass.core.store.repository import MaintainResult


def maintain_one(path: Path) -> MaintainResult:
    """Given a repository's path, pack it under its lock and return what was done. Raise
    RepositoryError if it is not a repository or a commit holds it (busy)."""
    repo = Repository.open(path)
    with repo.lock():
        return repo.maintain()


def summary(result: MaintainResult) -> str:
    """Given a maintenance's result, return one line about it, for the command line, logs and
    job histories."""
    if not result.removed:
        return "maintained"
    return (
        f"maintained; removed {result.removed} leftover temporary files of killed commits "
        f"({result.bytes_freed / 1e6:.1f} MB)"
    )
