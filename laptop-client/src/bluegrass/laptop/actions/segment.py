"""`bluegrass segment add|list|remove`: the folders this computer keeps in sync.

A segment pairs a local folder with the cloud folder of the same name. Removing a segment only
stops syncing it: the folder on this computer, the cloud's copy and its history stay.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from bluegrass.core import names
from bluegrass.core.cli import emit_json
from bluegrass.core.errors import UsageError
from bluegrass.laptop import actions, filters, locking, settings
from bluegrass.laptop.state import SegmentFiles


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("segment", help="add, list or remove synced folders", description=__doc__)
    ssub = p.add_subparsers(metavar="ACTION")
    add = ssub.add_parser(
        "add",
        help="sync a folder as a segment",
        description="Add a segment: the folder PATH, synced two-way with the cloud folder NAME. "
        "The first sync copies both ways and deletes nothing.",
    )
    add.add_argument("name", metavar="NAME", help="1-63 characters of a-z, 0-9 and '-'")
    add.add_argument("path", metavar="PATH", help="the folder on this computer")
    add.add_argument(
        "--exclude",
        metavar="PATTERN",
        action="append",
        default=[],
        help="leave out files matching this rclone filter pattern (repeatable), e.g. "
        "'*.tmp', 'node_modules/', '/cache/**'",
    )
    add.add_argument(
        "--interval",
        metavar="MINUTES",
        type=int,
        help="sync this segment every MINUTES (default: [sync] interval_minutes, 15)",
    )
    add.set_defaults(handler=run_add)
    ls = ssub.add_parser("list", help="list segments", description="List the segments.")
    ls.add_argument("--json", action="store_true", help="print the result as JSON")
    ls.set_defaults(handler=run_list)
    rm = ssub.add_parser(
        "remove",
        help="stop syncing a segment",
        description="Stop syncing a segment. Your folder, the cloud's copy and its history "
        "are left as they are.",
    )
    rm.add_argument("name", metavar="NAME")
    rm.set_defaults(handler=run_remove)


def _canonical(text: str) -> Path:
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path
    # Canonical (symlinks resolved, normalised): bisync names its state after this string.
    return path.resolve(strict=False)


def _overlaps(a: Path, b: Path) -> bool:
    return a == b or a.is_relative_to(b) or b.is_relative_to(a)


def _check_pattern(pattern: str) -> str:
    if not settings.is_pattern(pattern):
        raise UsageError(f"bad exclude pattern {pattern!r}: one line of text expected")
    try:
        filters.translate(pattern.rstrip("/").lstrip("/"))
    except re.error as exc:
        raise UsageError(f"bad exclude pattern {pattern!r}: {exc}") from None
    return pattern


def run_add(args: argparse.Namespace) -> int:
    current = actions.load()
    name = names.check("segment", args.name)
    existing = current.segments()
    if name in existing:
        raise UsageError(
            f"segment {name!r} already exists (folder {existing[name].path}); remove it first "
            "to change it"
        )
    path = _canonical(args.path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{path} is not a folder")
    if path.parent == path:
        raise UsageError(f"{path} is the root of a disk; choose a folder")
    for other in existing.values():
        if _overlaps(path, other.path):
            raise UsageError(
                f"{path} overlaps segment {other.name!r} ({other.path}); segments may not nest"
            )
    places = current.places
    for own in {places.config_dir, places.state_dir}:
        if _overlaps(path, own.resolve(strict=False)):
            raise UsageError(f"{path} overlaps Bluegrass's own folder {own}")
    if args.interval is not None and not settings.is_minutes(args.interval):
        raise UsageError("--interval: expected a whole number of minutes from 1 to 1440")
    excludes = [_check_pattern(p) for p in args.exclude]
    body: dict = {"path": str(path), "exclude": excludes}
    if args.interval is not None:
        body["interval_minutes"] = args.interval
    current.values["segments"][name] = body
    current.save()
    SegmentFiles(places, name).remove()  # nothing stale from an earlier segment of that name
    print(f"Added segment {name}: {path} <-> cloud folder {name}")
    if not path.exists():
        print(f"Note: {path} does not exist yet; syncing waits until it does.")
    print(f"The first sync copies both ways and deletes nothing: bluegrass sync {name}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    current = actions.load()
    found = [
        {
            "segment": s.name,
            "path": str(s.path),
            "exclude": list(s.exclude),
            "interval_minutes": s.interval_minutes,
            "max_delete_percent": s.max_delete_percent,
            "max_change_percent": s.max_change_percent,
        }
        for s in current.segments().values()
    ]
    if args.json:
        emit_json({"segments": found})
        return 0
    if not found:
        print("No segments yet; add one with: bluegrass segment add NAME PATH")
    for s in found:
        extra = f"  (excludes: {', '.join(s['exclude'])})" if s["exclude"] else ""
        print(f"{s['segment']}\t{s['path']}\tevery {s['interval_minutes']} min{extra}")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    current = actions.load()
    existing = current.segments()
    if args.name not in existing:
        known = ", ".join(existing) or "none"
        raise UsageError(f"no segment named {args.name!r} (segments: {known})")
    files = SegmentFiles(current.places, args.name)
    lock = locking.FileLock(files.lock)
    try:
        lock.acquire()
    except locking.Busy:
        raise UsageError(f"segment {args.name!r} is being synced right now; try again") from None
    try:
        del current.values["segments"][args.name]
        current.save()
    finally:
        lock.release()
    files.remove()
    print(
        f"Stopped syncing {args.name}. Your folder {existing[args.name].path} and the cloud's "
        "copy are untouched."
    )
    return 0
