"""What a pull of the latest files must settle around rclone: links, and kinds that change.

A link reaches the cloud as a file `NAME.rclonelink` holding its target, and `rclone sync
--links` makes it a real symlink NAME on the drive again (links are the user's data, kept as
links). rclone alone gets two cases wrong (decision 111):

- the cloud holds `NAME.rclonelink` and a file or folder NAME beside it: both cannot be on one
  drive, and rclone failed the whole segment on every pull, deleting nothing. Here the file or
  folder is pulled and the link is left out and reported (`Plan.conflicts`);
- NAME changes kind (link to file, file to link, link to folder, folder to file): rclone wrote
  the new NAME, then deleted the old one under the same name, or could not make the folder
  where the link or file was (and then deleted nothing in the segment). Here the drive's old
  NAME is removed first, when the cloud has no such entry any more.

After the sync, `missing` compares what the cloud had with what the drive holds, so a pull never
says "ok" while a file of the cloud is not on the drive.

Both trees are listed by rclone itself (`lsjson`), so names are compared as rclone spells them
(a symlink on the drive lists as `NAME.rclonelink`, as on the cloud); nothing here follows a
link: the drive's tree is walked by rclone without following, and removals do not follow links
(os.unlink, shutil.rmtree).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bluegrass.core import rclone
from bluegrass.core.errors import BluegrassError
from bluegrass.core.syncmeta import LINK_SUFFIX

LINK = os.fsdecode(LINK_SUFFIX)
# rclone's glob characters, escaped in a rule that names one path exactly.
_GLOB = set("*?[]{}\\")

Listing = dict[str, bool]  # path (rclone's spelling) -> is a folder


class ListingFailed(BluegrassError):
    """rclone could not list a tree; `stderr` says why (for files.classify_rclone)."""

    def __init__(self, stderr: str, code: int) -> None:
        super().__init__(f"rclone lsjson exited with {code}")
        self.stderr = stderr
        self.code = code


@dataclass
class Plan:
    conflicts: list[str] = field(default_factory=list)  # links left out: `NAME.rclonelink`
    removed: list[str] = field(default_factory=list)  # drive entries removed before the sync

    def rules(self) -> list[str]:
        """rclone filter rules leaving the conflicting links out of the sync."""
        return [f"- /{_escape(path)}" for path in self.conflicts]

    def problems(self, remote: Listing) -> list[str]:
        said = []
        for path in self.conflicts:
            name = path[: -len(LINK)]
            kind = "folder" if remote.get(name) else "file"
            said.append(
                f"{name}: a link and a {kind} of the same name on the cloud; the {kind} "
                "was pulled, the link was left out"
            )
        return said


def _escape(path: str) -> str:
    return "".join(f"\\{c}" if c in _GLOB else c for c in path)


def listing_argv(remote: str, config: Path, rules: Iterable[str], links: bool) -> list[str]:
    return [
        str(rclone.binary()),
        "lsjson",
        "-R",
        remote,
        "--config",
        str(config),
        "--no-modtime",
        "--no-mimetype",
        *(["--links"] if links else []),
        *[arg for rule in rules for arg in ("--filter", rule)],
        "--use-json-log",
        "--log-level",
        "NOTICE",
    ]


def parse_listing(stdout: bytes) -> Listing:
    """Given `rclone lsjson -R`'s output, return path -> is a folder."""
    try:
        entries = json.loads(stdout)
    except ValueError as exc:
        raise BluegrassError(f"rclone lsjson gave no listing: {exc}") from None
    if not isinstance(entries, list):
        raise BluegrassError("rclone lsjson gave no listing")
    return {str(e["Path"]): bool(e.get("IsDir")) for e in entries if isinstance(e, dict)}


def plan(remote: Listing, drive: Listing) -> Plan:
    """Given the cloud's tree and the drive's (both as rclone lists them), return what to
    leave out of the sync and which drive entries are in the way of the cloud's."""
    found = Plan()
    for path in sorted(remote):
        if path.endswith(LINK) and not remote[path] and path[: -len(LINK)] in remote:
            found.conflicts.append(path)
    left_out = set(found.conflicts)
    for path in sorted(drive):
        is_dir = drive[path]
        if path in remote and path not in left_out and remote[path] != is_dir:
            found.removed.append(path)  # a folder on the drive, a file on the cloud, or back
        elif path.endswith(LINK) and not is_dir:
            # A link on the drive, where the cloud has a file or folder of its name now.
            if (path not in remote or path in left_out) and path[: -len(LINK)] in remote:
                found.removed.append(path)
        elif f"{path}{LINK}" in remote and f"{path}{LINK}" not in left_out:
            # A file or folder on the drive, where the cloud has a link of its name now.
            if path not in remote:
                found.removed.append(path)
    # A removed folder takes what is under it along: nothing under it is listed twice.
    kept: list[str] = []
    for path in found.removed:
        if not any(path.startswith(f"{done}/") for done in kept):
            kept.append(path)
    found.removed = kept
    return found


def remove(target: Path, path: str) -> None:
    """Remove one entry of the drive's copy, as rclone names it, without following a link:
    `NAME.rclonelink` is the symlink NAME; a folder goes with everything under it."""
    link = target / path[: -len(LINK)]
    if path.endswith(LINK) and link.is_symlink():
        link.unlink()
        return
    where = target / path
    with contextlib.suppress(FileNotFoundError):
        st = os.lstat(where)
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(where)
        else:
            where.unlink()


def missing(remote: Listing, drive: Listing, left_out: Iterable[str]) -> list[str]:
    """Given the cloud's tree and the drive's after a sync, return the cloud's entries not on
    the drive as what they are on the cloud (a folder as a folder, a file or link as one)."""
    skip = set(left_out)
    return [
        path
        for path, is_dir in sorted(remote.items())
        if path not in skip and drive.get(path) is not is_dir
    ]
