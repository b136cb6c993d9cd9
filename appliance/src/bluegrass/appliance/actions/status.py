"""`bluegrass-appliance status`: the daemon's view, last jobs, segments, health, alerts."""

from __future__ import annotations

import argparse

import psutil
from bluegrass.appliance import setupcode
from bluegrass.appliance.context import Appliance
from bluegrass.appliance.state import iso
from bluegrass.core.cli import emit_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "status",
        help="what the appliance is doing, and what went wrong",
        description="The daemon's state (running?), the drive (ready, or missing since when), "
        "the cloud (reachable, or unreachable since when and the next try), the last job of "
        "each kind, every segment's last result, health, and active alerts.",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=run)


def collect(app: Appliance) -> dict[str, object]:
    state = app.state
    daemon = state.get("daemon") or {}
    alive = bool(
        daemon.get("state") == "running" and daemon.get("pid") and psutil.pid_exists(daemon["pid"])
    )
    drive = state.get("drive") or {}
    cloud = state.get("cloud") or {}
    enrolled = app.enrollment()
    last = {}
    for kind in ("mirror", "files"):
        found = state.jobs(limit=1, kind=kind)
        last[kind] = found[0] if found else None
    return {
        "enrolled": {"user": enrolled.user, "server": enrolled.server} if enrolled else None,
        "daemon": {
            "running": alive,
            "pid": daemon.get("pid") if alive else None,
            "started": iso(daemon.get("started")),
            "monitor": daemon.get("monitor"),
            "job": daemon.get("running") if alive else None,
            "next": {k: iso(v) for k, v in (daemon.get("next") or {}).items()},
            "heartbeat": iso(state.get("heartbeat")),
        },
        "drive": {
            "state": drive.get("state", "unknown"),
            "since": iso(drive.get("since")),
            "message": drive.get("message", ""),
            "device": drive.get("device"),
            "id": drive.get("id"),
            "mountpoint": drive.get("root"),
            "found_by": drive.get("found_by"),
        },
        "cloud": {
            "state": cloud.get("state", "unknown"),
            "since": iso(cloud.get("since")),
            "attempts": cloud.get("attempts", 0),
            "next_try": iso(cloud.get("next_try")) if cloud.get("next_try") else None,
            "message": cloud.get("message", ""),
        },
        "panel": _panel(state.get("panel"), alive),
        "panel_setup": _panel_setup(app),
        "last_jobs": last,
        "segments": [
            {k: v for k, v in r.items() if not k.endswith("_ts")} for r in state.segment_results()
        ],
        "health": _health(state.get("health")),
        "alerts": [a.to_json() for a in state.alerts()],
    }


def _panel(found: dict[str, object] | None, alive: bool) -> dict[str, object] | None:
    if not found:
        return None
    state = found.get("state") if alive else "stopped"
    return {
        "state": state,
        "url": found.get("url"),
        "bind": found.get("bind"),
        "port": found.get("port"),
        "pid": found.get("pid") if alive else None,
        "since": iso(found.get("since")),  # type: ignore[arg-type]
        "message": found.get("message", ""),
    }


def _panel_setup(app: Appliance) -> dict[str, object] | None:
    # Shown to whoever can read the Pi's state (root): the owner, not the network.
    found = setupcode.current(app)
    return {"setup_code": found.code, "file": str(found.file)} if found else None


def _health(found: dict[str, object] | None) -> dict[str, object] | None:
    if not found:
        return None
    return {**found, "at": iso(found.get("at"))}  # type: ignore[arg-type]


def run(args: argparse.Namespace) -> int:
    app = Appliance.from_args(args)
    found = collect(app)
    if args.json:
        emit_json(found)
        return 0
    for line in render(found):
        print(line)
    return 0


def render(found: dict) -> list[str]:
    lines = []
    enrolled = found["enrolled"]
    lines.append(
        f"Enrolled: {enrolled['user']} on {enrolled['server']}" if enrolled else "Not enrolled."
    )
    daemon = found["daemon"]
    if daemon["running"]:
        job = f", running the {daemon['job']} job" if daemon["job"] else ""
        watching = (
            f"watching {daemon['monitor']} events"
            if daemon["monitor"] in ("udev", "kernel")
            else "a folder stands in for the drive"
        )
        lines.append(
            f"Daemon: running (pid {daemon['pid']}, since {daemon['started']}, {watching}){job}"
        )
    else:
        lines.append("Daemon: not running")
    drive = found["drive"]
    text = {
        "ready": f"ready since {drive['since']}: {drive['id']} at {drive['mountpoint']}",
        "missing": f"MISSING since {drive['since']}: {drive['message']}",
        "absent": f"not plugged in (since {drive['since']})",
        "ejected": f"ejected at {drive['since']}: safe to unplug",
        "unusable": f"found but not usable: {drive['message']}",
    }.get(drive["state"], drive["state"])
    lines.append(f"Drive: {text}")
    panel = found.get("panel")
    if panel and daemon["running"]:
        if panel["state"] == "up":
            lines.append(f"Panel: {panel['url']} (listening on {panel['bind']}:{panel['port']})")
        else:
            detail = f": {panel['message']}" if panel["message"] else ""
            lines.append(f"Panel: {panel['state'].upper()} since {panel['since']}{detail}")
    setup = found.get("panel_setup")
    if setup:
        where = f"{panel['url']}setup" if panel and panel.get("url") else "the panel's /setup"
        lines.append(
            f"Panel: no administrator yet; open {where} and type the setup code "
            f"{setup['setup_code']} (it works once)"
        )
    cloud = found["cloud"]
    if cloud["state"] == "not-enrolled":
        lines.append(f"Cloud: not enrolled yet ({cloud['message']})")
    elif cloud["state"] == "unreachable":
        upcoming = f", next try {cloud['next_try']}" if daemon["running"] else ""
        lines.append(
            f"Cloud: UNREACHABLE since {cloud['since']} ({cloud['attempts']} attempts"
            f"{upcoming}): {cloud['message']}"
        )
    elif cloud["state"] == "refused":
        lines.append(f"Cloud: REFUSED this device since {cloud['since']}: {cloud['message']}")
    else:
        lines.append(
            f"Cloud: {cloud['state']}" + (f" since {cloud['since']}" if cloud["since"] else "")
        )
    for kind, job in found["last_jobs"].items():
        if job:
            lines.append(
                f"Last {kind}: {job['outcome'] or 'running'} at {job['started']}: "
                f"{job['message'] or ''}"
            )
    nexts = {k: v for k, v in daemon["next"].items() if v} if daemon["running"] else {}
    if nexts:
        lines.append("Next: " + ", ".join(f"{k} at {v}" for k, v in nexts.items()))
    health = found["health"]
    if health:
        parts = [
            f"memory {health['memory']['available_percent']}% free",
            "load " + " ".join(str(x) for x in health["load"]),
        ]
        if health.get("cpu_temperature") is not None:
            parts.append(f"CPU {health['cpu_temperature']:.0f} °C")
        if health.get("drive"):
            parts.append(f"drive {health['drive']['free_percent']}% free")
        lines.append("Health: " + ", ".join(parts))
    alerts = found["alerts"]
    lines.append(f"Alerts: {len(alerts)}" if alerts else "Alerts: none")
    for a in alerts:
        lines.append(f"  #{a['id']} {a['first_seen']} {a['kind']} {a['subject']}: {a['message']}")
    return lines
