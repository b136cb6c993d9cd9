"""Edits that size and time cannot tell apart, shown to bisync (decision 60).

The sftp side keeps whole seconds, so bisync takes two times less than a second apart as
equal: a same-size edit within the second of the version it replaces is, to bisync, no
change at all. Found in a drill: two laptops "in sync" with different bytes. Before a bisync
the laptop looks for such edits on both sides, and where it finds one it makes bisync look:
it sets that file's time in bisync's record of the last sync (its listing) to one far in the
past, so bisync sees the file changed on that side and copies it, or, changed on both, checks
the two by hash and keeps both versions.

- This computer: a file that differs from the state recorded after the last good sync
  (`synced`, the sidecar records) while its size equals the listing's and its time is less
  than a second from the listing's (but not equal: a time the listing holds exactly is the
  state bisync itself wrote).
- The cloud: another device's sidecar records a newer state of a file than this computer's
  last good sync, in the same size and second as the cloud's copy in the listing. Whether the
  cloud's bytes really differ is asked of the cloud (`rclone md5sum`, for those files only).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path

from bluegrass.core.syncmeta import Record, Sidecars, same_second
from bluegrass.laptop import guard, remote
from bluegrass.laptop.runner import Rclone

# bisync's listing line: "- SIZE HASH ID MODTIME "NAME"" (SIZE right-aligned).
_LINE = re.compile(r'^(-\s+\d+ \S+ \S+ )(\S+)( ".*")$')
FORCED_TIME = "2000-01-01T00:00:00.000000000+0000"


def _name(path: bytes) -> str | None:
    try:
        return path.decode("utf-8")  # rclone lists other bytes in its own replacement form
    except UnicodeDecodeError:
        return None


def _hidden_from(listed: guard.Entry | None, size: int, mtime_ns: int) -> bool:
    """Whether bisync, holding `listed`, would take a file of this size and time as it."""
    if listed is None or listed.folder or listed.mtime_ns is None or listed.size != size:
        return False
    return abs(mtime_ns - listed.mtime_ns) < guard.MODIFY_WINDOW_NS


Listing = Callable[[], dict[str, guard.Entry]]  # read only when a file is suspect


def local_edits(
    current: dict[bytes, Record], synced: dict[bytes, Record], listing: Listing
) -> list[str]:
    """Files edited here since the last good sync that bisync would not see."""
    suspects = []
    for path, now in current.items():
        before = synced.get(path)
        if now.kind == "f" and before is not None and not before.same_state(now):
            name = _name(path)
            if name is not None:
                suspects.append((name, now))
    if not suspects:
        return []
    listed = listing()
    found = []
    for name, now in suspects:
        entry = listed.get(name)
        if entry is not None and entry.mtime_ns != now.mtime_ns:
            if _hidden_from(entry, now.size, now.mtime_ns):
                found.append(name)
    return found


def cloud_candidates(
    current: dict[bytes, Record],
    synced: dict[bytes, Record],
    sidecars: Sidecars,
    own: str,
    listing: Listing,
) -> list[str]:
    """Files another device recorded a newer state of, which bisync would not see."""
    suspects = []
    for source, table in sidecars.tables.items():
        if source == own:
            continue
        for path, theirs in table.items():
            before = synced.get(path)
            if theirs.kind != "f" or before is None or path not in current:
                continue
            if theirs.same_state(before) or theirs.changed_ns <= before.changed_ns:
                continue
            name = _name(path)
            if name is not None:
                suspects.append((name, theirs))
    if not suspects:
        return []
    listed = listing()
    found: list[str] = []
    for name, theirs in suspects:
        entry = listed.get(name)
        if entry is None or entry.mtime_ns is None or name in found:
            continue
        if _hidden_from(entry, theirs.size, theirs.mtime_ns) and same_second(
            theirs.mtime_ns, entry.mtime_ns
        ):
            found.append(name)
    return found


def differing_on_cloud(rclone: Rclone, segment: str, folder: Path, names: list[str]) -> list[str]:
    """Of `names`, those whose bytes on the cloud differ from this computer's (all of them if
    the cloud cannot say)."""
    listed = rclone.cache_dir / "hidden-check.txt"  # never inside the segment
    listed.parent.mkdir(parents=True, exist_ok=True)
    listed.write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
    proc = rclone.run(["md5sum", remote.remote_path(segment), "--files-from-raw", str(listed)])
    if proc.returncode != 0:
        return names
    theirs = {}
    for line in proc.stdout.splitlines():
        digest, _, name = line.partition("  ")
        theirs[name] = digest
    out = []
    for name in names:
        try:
            with folder.joinpath(*name.split("/")).open("rb") as handle:
                mine = hashlib.file_digest(handle, "md5").hexdigest()
        except OSError:
            continue  # gone meanwhile: bisync sees that itself
        if theirs.get(name) != mine:
            out.append(name)
    return out


def force(listing_file: Path, names: list[str]) -> int:
    """Set these files' times in a bisync listing far in the past; how many were set."""
    wanted = set(names)
    text = listing_file.read_text(encoding="utf-8", errors="surrogateescape")
    lines = text.splitlines(keepends=True)
    changed = 0
    for i, line in enumerate(lines):
        match = _LINE.match(line.rstrip("\n"))
        if match and guard.unquote(match.group(3)[2:-1]) in wanted:
            lines[i] = f"{match.group(1)}{FORCED_TIME}{match.group(3)}\n"
            changed += 1
    if changed:
        tmp = listing_file.with_name(listing_file.name + ".bluegrass-tmp")
        tmp.write_text("".join(lines), encoding="utf-8", errors="surrogateescape")
        tmp.replace(listing_file)
    return changed
