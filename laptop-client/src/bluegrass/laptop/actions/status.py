"""`bluegrass status`: per segment, how the last sync went, when the next one is, and what
(if anything) you need to do; plus everything that cannot be synced.

The JSON form (`--json`) is documented in docs/cli.md; fields are only ever added.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

from bluegrass.core.cli import emit_json
from bluegrass.laptop import actions, locking, notifications, report
from bluegrass.laptop.bisync import OK
from bluegrass.laptop.state import SegmentFiles, load_daemon_info, parse_time

STATUS_VERSION = 1


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "status",
        help="how each segment's syncing is going",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(handler=run)


def collect() -> dict[str, Any]:
    current = actions.load()
    places = current.places
    running = locking.is_locked(places.daemon_lock)
    info = load_daemon_info(places) if running else {}
    next_runs = info.get("next_run", {}) if isinstance(info.get("next_run"), dict) else {}
    server = None
    if current.enrolled:
        s = current.server
        server = {
            "host": s["host"],
            "sftp_port": s["sftp_port"],
            "user": s["user"],
            "device": s["device"],
        }
    segments = []
    for name, segment in current.segments().items():
        state = SegmentFiles(places, name).load()
        last = asdict(state.last_run) if state.last_run else None
        attention = bool(last and last["outcome"] != OK and last["action"])
        segments.append(
            {
                "segment": name,
                "path": str(segment.path),
                "remote": name,
                "interval_minutes": segment.interval_minutes,
                "max_delete_percent": segment.max_delete_percent,
                "max_change_percent": segment.max_change_percent,
                "established": state.established,
                "last_run": last,
                "last_ok": state.last_ok,
                "failures": state.failures,
                "next_run": next_runs.get(name) if running else None,
                "needs_attention": attention or bool(state.unsyncable),
                "unsyncable": state.unsyncable,
                "warnings": state.warnings,
            }
        )
    notifier = notifications.notifier(places.state_dir, current.notify)
    return {
        "version": STATUS_VERSION,
        "enrolled": current.enrolled,
        "server": server,
        "daemon": {"running": running, "pid": info.get("pid") if running else None},
        "segments": segments,
        "notify": notifier.summary(),
    }


def _when(text: str | None) -> str:
    moment = parse_time(text)
    if moment is None:
        return "never"
    local = moment.astimezone()
    return local.strftime("%Y-%m-%d %H:%M:%S")


def _duration(start: str, end: str) -> str:
    a, b = parse_time(start), parse_time(end)
    if a is None or b is None:
        return ""
    seconds = max((b - a).total_seconds(), 0)
    return f" ({seconds:.0f} s)"


def run(args: argparse.Namespace) -> int:
    data = collect()
    if args.json:
        emit_json(data)
        return 0
    if data["server"]:
        s = data["server"]
        print(f"Enrolled as {s['user']} on {s['host']}:{s['sftp_port']} (device {s['device']})")
    else:
        print("Not enrolled: run `bluegrass enroll CODE`")
    daemon = data["daemon"]
    if daemon["running"]:
        print(f"Scheduler: running (pid {daemon['pid']})")
    else:
        print("Scheduler: not running (start it with `bluegrass run`, or install the service)")
    if not data["segments"]:
        print("No segments yet; add one with: bluegrass segment add NAME PATH")
    for seg in data["segments"]:
        print()
        print(f"{seg['segment']}: {seg['path']}  (every {seg['interval_minutes']} min)")
        last = seg["last_run"]
        if last is None:
            print("  last sync: never")
        else:
            label = report.LABELS.get(last["outcome"], last["outcome"])
            took = _duration(last["started"], last["finished"])
            print(f"  last sync: {_when(last['finished'])}{took}: {label}")
            if last["outcome"] == OK:
                counts = report.moved(
                    last["files_transferred"],
                    last["bytes_transferred"],
                    last["deletes"],
                    last["conflicts"],
                    last.get("bisync", True),
                )
                print(f"    {counts}")
            else:
                print(f"    {last['message']}")
                if seg["last_ok"]:
                    print(f"    last good sync: {_when(seg['last_ok'])}")
            if last["action"]:
                print(f"  to do: {last['action']}" + (":" if last["command"] else ""))
            if last["command"]:
                print(f"    {last['command']}")
        if seg["next_run"]:
            print(f"  next sync: {_when(seg['next_run'])}")
        elif not daemon["running"]:
            print("  next sync: when you run `bluegrass sync` (the scheduler is not running)")
        if seg["unsyncable"]:
            print(f"  cannot be synced ({len(seg['unsyncable'])}):")
            for item in seg["unsyncable"]:
                print(f"    {item['path']}: {item['reason']}")
        if seg["warnings"]:
            print(f"  worth knowing ({len(seg['warnings'])}):")
            for item in seg["warnings"]:
                print(f"    {item['path']}: {item['reason']}")
    _print_notify(data["notify"])
    return 0


def _print_notify(notify: dict[str, Any]) -> None:
    """Only when there is something to say: a problem notifications are about, or messages
    that could not be sent."""
    if not notify["problems"] and not notify["waiting"]:
        return
    print()
    for problem in notify["problems"]:
        said = "notified" if problem["said"] else "not notified yet"
        since = _when(problem["since"])
        print(f"Problem: {problem['event']} {problem['subject']} since {since} ({said})")
    if notify["waiting"]:
        why = f": {notify['last_error']}" if notify["last_error"] else ""
        print(f"Notifications waiting to be sent: {notify['waiting']}{why}")
