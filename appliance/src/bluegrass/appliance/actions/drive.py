"""`bluegrass-appliance drive status|prepare|eject`."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from bluegrass.appliance import drive, health, readme
from bluegrass.appliance.context import Appliance
from bluegrass.appliance.eject import eject
from bluegrass.core.cli import emit_json
from bluegrass.core.errors import UsageError

MIN_SIZE = 16 * 2**20


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("drive", help="the backup drive: status, prepare, eject")
    commands = p.add_subparsers(metavar="ACTION", parser_class=type(p))

    status = commands.add_parser(
        "status",
        help="is the drive there, mounted, how full",
        description="Look for the backup drive now (not the daemon's view: see `status`).",
    )
    status.add_argument("--json", action="store_true", help="print the result as JSON")
    status.set_defaults(handler=run_status)

    prepare = commands.add_parser(
        "prepare",
        help="erase a device and make it a backup drive",
        description="Format DEVICE as ext4 labelled with drive.label, and write the drive's "
        "marker, README and format description. Refuses a mounted device, the system disk "
        "(the one holding / or /boot) or any part of it, and asks you to type the device's "
        "name unless --yes.",
    )
    prepare.add_argument("device", metavar="DEVICE", help="e.g. /dev/sda or /dev/sda1")
    prepare.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    prepare.add_argument("--json", action="store_true", help="print the result as JSON")
    prepare.set_defaults(handler=run_prepare)

    eject = commands.add_parser(
        "eject",
        help="flush and unmount the drive so it can be unplugged",
        description="Wait for (or refuse during) a running job, flush, and unmount the drive. "
        "The daemon does not mount it again until it has been unplugged.",
    )
    eject.add_argument(
        "--wait",
        metavar="SECONDS",
        type=float,
        default=0,
        help="wait this long for a running job to finish (default: refuse while one runs)",
    )
    eject.add_argument("--json", action="store_true", help="print the result as JSON")
    eject.set_defaults(handler=run_eject)


def drive_status(app: Appliance) -> dict[str, object]:
    if app.drive_dir:
        marker = drive.read_marker(app.drive_dir) if app.drive_dir.is_dir() else None
        return {
            "present": app.drive_dir.is_dir(),
            "kind": "folder",
            "device": None,
            "mounted": app.drive_dir.is_dir(),
            "mountpoint": str(app.drive_dir),
            "id": marker.id if marker else None,
            "space": health.disk(app.drive_dir) if app.drive_dir.is_dir() else None,
        }
    mounted = drive.mount_at(app.mountpoint)
    found = drive.find_candidates(app.label)
    device = None
    if mounted is not None:
        device = next((c for c in found if c.devnum == mounted.devnum), None)
    elif found:
        device = found[0]
    marker = drive.read_marker(app.mountpoint) if mounted is not None else None
    return {
        "present": device is not None,
        "kind": "block device",
        "device": device.device if device else None,
        "size": device.size if device else None,
        "label": app.label,
        "mounted": mounted is not None and device is not None,
        "mountpoint": str(app.mountpoint),
        "id": marker.id if marker else None,
        "space": health.disk(app.mountpoint) if mounted is not None else None,
    }


def run_status(args: argparse.Namespace) -> int:
    app = Appliance.from_args(args)
    found = drive_status(app)
    if args.json:
        emit_json(found)
        return 0
    if not found["present"]:
        print(f"No backup drive found (ext4 labelled {app.label}).")
        return 0
    where = found["device"] or found["mountpoint"]
    print(f"Drive: {where} ({found['kind']}), id {found['id'] or 'unknown until mounted'}")
    if found["mounted"]:
        space = found["space"]
        assert isinstance(space, dict)
        print(
            f"Mounted at {found['mountpoint']}: {space['free'] // 2**20} MB free of "
            f"{space['total'] // 2**20} MB ({space['free_percent']}% free)"
        )
    else:
        print("Not mounted (the daemon mounts it when it runs).")
    return 0


def run_prepare(args: argparse.Namespace) -> int:
    app = Appliance.from_args(args)
    device = args.device
    devnum = drive.block_devnum(device)
    reason = drive.refuse_reason(
        devnum,
        drive.Topology(),
        drive.mounts(),
        Path("/proc/swaps").read_text() if Path("/proc/swaps").exists() else "",
    )
    if reason:
        raise UsageError(f"refusing to prepare {device}: {reason}")
    size = _size(devnum)
    if size < MIN_SIZE:
        raise UsageError(f"refusing to prepare {device}: {size // 2**20} MB is too small")
    if not args.yes:
        _confirm(device, size)
    drive.format_drive(device, app.label)
    marker = drive.Marker.new()
    with tempfile.TemporaryDirectory(prefix="bluegrass-prepare-") as tmp:
        where = Path(tmp)
        drive.mount(device, where)
        try:
            drive.write_marker(where, marker)
            (where / "bluegrass").mkdir(exist_ok=True)
            readme.write(where, app.label)
            os.sync()
        finally:
            drive.unmount(where)
    app.state.put("prepared", {"id": marker.id, "device": device, "at": time.time()})
    if args.json:
        emit_json({"device": device, "id": marker.id, "label": app.label, "size": size})
    else:
        print(f"{device} is now Bluegrass drive {marker.id} (ext4, label {app.label}).")
    return 0


def _size(devnum: tuple[int, int]) -> int:
    try:
        return int(Path(f"/sys/dev/block/{devnum[0]}:{devnum[1]}/size").read_text()) * 512
    except (OSError, ValueError):
        return 0


def _confirm(device: str, size: int) -> None:
    found = drive.probe(device)
    what = ", ".join(f"{k.lower()} {v}" for k, v in found.items() if k in ("TYPE", "LABEL"))
    sys.stderr.write(
        f"This ERASES everything on {device} ({size / 1e9:.1f} GB{', ' + what if what else ''}).\n"
        f"Type the device name ({device}) to continue: "
    )
    sys.stderr.flush()
    typed = sys.stdin.readline().strip()
    if typed not in (device, Path(device).name):
        raise UsageError(f"not confirmed (typed {typed!r}); {device} was not touched")


def run_eject(args: argparse.Namespace) -> int:
    app = Appliance.from_args(args)
    device = eject(app, args.wait)
    if args.json:
        emit_json({"ejected": True, "device": device, "mountpoint": str(app.mountpoint)})
    else:
        print(f"{device} is unmounted: you can unplug it now.")
    return 0
