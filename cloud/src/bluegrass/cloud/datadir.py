"""The cloud's data root: where users' live trees and their histories live.

DATA/bluegrass-cloud.toml        configuration
DATA/files/<user>/<segment>/     the live synced tree of each segment
DATA/repos/<user>/<segment>.git  its history (a Bluegrass repository)
DATA/run/status.json             what `run` says about its children (the sync endpoint's
                                 state), read by /health and the dashboard
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bluegrass.core import names
from bluegrass.core.errors import BluegrassError, UsageError
from bluegrass.core.store import Repository

DEFAULT = Path("bluegrass-data")
MARKER = ".bluegrass-data"
# Written by `run`, read by the web server: here, beside the rest of the layout, so that
# neither has to import the other for it.
STATUS_FILE = Path("run") / "status.json"


class Busy(BluegrassError):
    """Another process holds a lock we do not wait for; trying again later will do."""


@dataclass(frozen=True)
class Stray:
    """Something in a user's folder that is not a segment and so is not backed up."""

    user: str
    name: str
    reason: str


class DataRoot:
    def __init__(self, path: Path) -> None:
        self.path = path.absolute()
        self.files = self.path / "files"
        self.repos = self.path / "repos"

    @classmethod
    def from_args(cls, data: str | None) -> DataRoot:
        chosen = data or os.environ.get("BLUEGRASS_DATA") or str(DEFAULT)
        return cls(Path(chosen))

    @property
    def initialised(self) -> bool:
        return (self.path / MARKER).is_file()

    def require(self) -> DataRoot:
        if not self.initialised:
            raise BluegrassError(
                f"no Bluegrass data root at {self.path} (create it with: bluegrass-cloud init "
                f"--data {self.path})"
            )
        return self

    # -- users and segments ----------------------------------------------------------------

    def users(self) -> list[str]:
        if not self.files.is_dir():
            return []
        return sorted(p.name for p in self.files.iterdir() if p.is_dir() and names.is_valid(p.name))

    def user_dir(self, user: str) -> Path:
        names.check("user", user)
        path = self.files / user
        if not path.is_dir():
            raise UsageError(f"unknown user {user!r} (see: bluegrass-cloud user list)")
        return path

    def segments(self, user: str) -> list[str]:
        found = set()
        folder = self.user_dir(user)
        found.update(p.name for p in folder.iterdir() if p.is_dir() and not p.is_symlink())
        repos = self.repos / user
        if repos.is_dir():
            found.update(p.name[:-4] for p in repos.iterdir() if p.name.endswith(".git"))
        return sorted(n for n in found if names.is_valid(n))

    def strays(self, user: str) -> list[Stray]:
        """Entries of a user's folder that cannot be a segment: reported, never ignored."""
        out = []
        for entry in sorted(self.user_dir(user).iterdir()):
            if entry.is_symlink() or not entry.is_dir():
                out.append(Stray(user, entry.name, "not a folder, so not in any segment"))
            elif not names.is_valid(entry.name):
                out.append(Stray(user, entry.name, "not a valid segment name (a-z, 0-9, '-')"))
        return out

    def live_tree(self, user: str, segment: str) -> Path:
        names.check("segment", segment)
        return self.user_dir(user) / segment

    def repo_path(self, user: str, segment: str) -> Path:
        names.check("segment", segment)
        return self.repos / user / f"{segment}.git"

    def open_repo(self, user: str, segment: str) -> Repository:
        path = self.repo_path(user, segment)
        self.user_dir(user)
        if not path.exists():
            if self.live_tree(user, segment).is_dir():
                raise UsageError(f"segment {user}/{segment} has no history yet (run: commit)")
            raise UsageError(f"unknown segment {user}/{segment}")
        return Repository.open(path)

    @contextlib.contextmanager
    def user_lock(self, user: str, *, exclusive: bool) -> Iterator[None]:
        """Commits of a user's segments share this lock; removing the user takes it alone.

        Without it, `user remove` could delete a repository that a scheduled commit is
        creating, and the commit would leave a fresh one behind. Never waits: Busy instead.
        """
        names.check("user", user)
        folder = self.path / "locks"
        folder.mkdir(exist_ok=True)
        with (folder / f"{user}.lock").open("a") as handle:
            mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
            try:
                fcntl.flock(handle.fileno(), mode | fcntl.LOCK_NB)
            except BlockingIOError:
                doing = "a commit of their segments is running" if exclusive else "being removed"
                raise Busy(f"user {user!r} is busy: {doing}; try again shortly") from None
            yield

    def contains(self, path: Path) -> bool:
        """Whether `path` lies inside the data root's trees or repositories."""
        resolved = path.resolve()
        return any(resolved.is_relative_to(p.resolve()) for p in (self.files, self.repos))
