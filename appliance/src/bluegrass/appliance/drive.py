"""The backup drive: finding it, checking it is ours, mounting it, and guarding prepare.

A Bluegrass drive is an ext4 file system labelled BLUEGRASS (configurable) whose root holds
the marker file `.bluegrass-drive` ({"id": "bgd-…", …}), written by `drive prepare`. The
daemon mounts it itself: a mount made from a udev rule lives in udevd's private mount
namespace under systemd and is invisible to everything else (docs/design.md, Roles).

Block devices are listed with pyudev; what is on them is read with `blkid -p` (a low-level
probe that works whether or not udevd has filled its database).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bluegrass.core.errors import BluegrassError, UsageError

if TYPE_CHECKING:
    import pyudev

MARKER = ".bluegrass-drive"
FSTYPE = "ext4"
MOUNT_OPTIONS = "nosuid,nodev,noexec,noatime"
# Mount points of the system: the disk holding any of them can never be prepared.
SYSTEM_MOUNTS = ("/", "/boot", "/boot/firmware", "/boot/efi", "/usr", "/var")


class DriveError(BluegrassError):
    pass


@dataclass(frozen=True)
class Marker:
    id: str
    created: str

    @classmethod
    def new(cls) -> Marker:
        return cls("bgd-" + secrets.token_hex(8), time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    def to_bytes(self) -> bytes:
        data = {"bluegrass_drive": 1, "id": self.id, "created": self.created}
        return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def read_marker(root: Path) -> Marker | None:
    """The drive's marker, None when there is none; an I/O error propagates (drive gone)."""
    try:
        data = json.loads((root / MARKER).read_bytes())
    except FileNotFoundError:
        return None
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("bluegrass_drive") != 1:
        return None
    ident, created = data.get("id"), data.get("created", "")
    if not isinstance(ident, str) or not ident.startswith("bgd-"):
        return None
    return Marker(ident, str(created))


def write_marker(root: Path, marker: Marker) -> None:
    path = root / MARKER
    tmp = root / f".{MARKER}.tmp"
    with tmp.open("wb") as out:
        out.write(marker.to_bytes())
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(path)


# -- mounts ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mount:
    devnum: tuple[int, int]
    mountpoint: str
    fstype: str
    source: str


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[Mount]:
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields = left.split()
        major, minor = fields[2].split(":")
        fstype, source = [*right.split(), "", ""][:2]
        mounts.append(Mount((int(major), int(minor)), _unescape(fields[4]), fstype, source))
    return mounts


def mounts() -> list[Mount]:
    return parse_mountinfo(Path("/proc/self/mountinfo").read_text())


def mount_at(mountpoint: Path) -> Mount | None:
    """The file system mounted exactly at `mountpoint` (the last one, if stacked)."""
    found = [m for m in mounts() if m.mountpoint == str(mountpoint)]
    return found[-1] if found else None


def check_fs(device: str) -> None:
    """e2fsck in preen mode: replays the journal of a drive pulled mid-write, fixes what is
    safe to fix, and refuses (we do not mount) when a person has to decide."""
    proc = subprocess.run(["e2fsck", "-p", device], capture_output=True, text=True, check=False)
    # 0: clean, 1: errors corrected, 2: corrected, reboot advised (only for the root fs).
    if proc.returncode not in (0, 1, 2):
        lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
        raise DriveError(
            f"the drive's file system on {device} needs repair (e2fsck exit {proc.returncode}: "
            f"{lines[-1] if lines else 'no message'}); run e2fsck -f {device} by hand"
        )


def mount(device: str, mountpoint: Path) -> None:
    mountpoint.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["mount", "-t", FSTYPE, "-o", MOUNT_OPTIONS, device, str(mountpoint)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise DriveError(f"cannot mount {device} on {mountpoint}: {proc.stderr.strip()}")


def unmount(mountpoint: Path, *, lazy: bool = False) -> None:
    """Unmount; lazily for a drive that is already gone (its processes may still hold it)."""
    argv = ["umount", *(["--lazy"] if lazy else []), str(mountpoint)]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0 and mount_at(mountpoint) is not None:
        raise DriveError(f"cannot unmount {mountpoint}: {proc.stderr.strip()}")


# -- block devices --------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    device: str
    devnum: tuple[int, int]
    label: str
    uuid: str
    fstype: str
    size: int


def probe(device: str) -> dict[str, str]:
    """What is on a block device, read from the device itself (blkid's low-level probe)."""
    proc = subprocess.run(
        ["blkid", "-p", "-o", "export", device], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        return {}
    found = {}
    for line in proc.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            found[key] = value
    return found


def device_size(device: pyudev.Device) -> int:
    try:
        return int(device.attributes.asstring("size")) * 512
    except (KeyError, ValueError):
        return 0


def candidate(device: pyudev.Device, label: str) -> Candidate | None:
    """The device if it holds a Bluegrass-labelled ext4 file system, else None."""
    node = device.device_node
    if not node or device.get("DEVTYPE") not in ("disk", "partition"):
        return None
    size = device_size(device)
    if size == 0:
        return None
    # udev's database answers without touching the device; the probe confirms (and is the
    # only source when udevd is not running).
    known = device.get("ID_FS_LABEL")
    if known is not None and known != label:
        return None
    found = probe(node)
    if found.get("LABEL") != label or found.get("TYPE") != FSTYPE:
        return None
    devnum = (os.major(device.device_number), os.minor(device.device_number))
    return Candidate(node, devnum, label, found.get("UUID", ""), FSTYPE, size)


def find_candidates(label: str, context: pyudev.Context | None = None) -> list[Candidate]:
    # Imported here: every command loads this module, few of them list devices.
    import pyudev

    context = context or pyudev.Context()
    found = []
    for device in context.list_devices(subsystem="block"):
        if device.sys_name.startswith(("ram", "zram")):
            continue
        with contextlib.suppress(OSError):
            item = candidate(device, label)
            if item:
                found.append(item)
    return found


def devnum_present(devnum: tuple[int, int]) -> bool:
    """Whether the kernel still has the block device, with a non-zero size."""
    base = Path(f"/sys/dev/block/{devnum[0]}:{devnum[1]}")
    try:
        return int((base / "size").read_text()) > 0
    except (OSError, ValueError):
        return False


# -- guards for `drive prepare` -------------------------------------------------------------


class Topology:
    """Block devices as sysfs shows them; `sysfs` can be a fake tree in tests."""

    def __init__(self, sysfs: Path = Path("/sys")) -> None:
        self.sysfs = sysfs

    def name_of(self, devnum: tuple[int, int]) -> str | None:
        link = self.sysfs / "dev" / "block" / f"{devnum[0]}:{devnum[1]}"
        if not link.exists():
            return None
        return link.resolve().name

    def _dir(self, name: str) -> Path:
        return (self.sysfs / "class" / "block" / name).resolve()

    def is_partition(self, name: str) -> bool:
        return (self._dir(name) / "partition").exists()

    def disk_of(self, name: str) -> str:
        return self._dir(name).parent.name if self.is_partition(name) else name

    def partitions(self, name: str) -> list[str]:
        base = self._dir(name)
        return sorted(p.name for p in base.iterdir() if p.is_dir() and (p / "partition").exists())

    def slaves(self, name: str) -> list[str]:
        folder = self._dir(name) / "slaves"
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []

    def holders(self, name: str) -> list[str]:
        folder = self._dir(name) / "holders"
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []

    def underlying_disks(self, name: str, depth: int = 0) -> set[str]:
        """The physical disks a device lives on (through LVM, RAID or dm-crypt slaves)."""
        below = self.slaves(name)
        if below and depth < 16:
            return set().union(*(self.underlying_disks(s, depth + 1) for s in below))
        return {self.disk_of(name)}


def system_disks(topology: Topology, mount_list: Iterable[Mount], swaps: str) -> set[str]:
    """Disks holding /, /boot and friends, or swap: never to be formatted."""
    names: set[str] = set()
    for m in mount_list:
        if m.mountpoint not in SYSTEM_MOUNTS:
            continue
        name = topology.name_of(m.devnum) if m.devnum[0] != 0 else None
        if name is None and m.source.startswith("/dev/"):
            # btrfs and others report an anonymous device number; the source names it.
            name = Path(os.path.realpath(m.source)).name
        if name:
            names |= topology.underlying_disks(name)
    for line in swaps.splitlines()[1:]:
        source = line.split()[0] if line.split() else ""
        if source.startswith("/dev/"):
            names |= topology.underlying_disks(Path(os.path.realpath(source)).name)
    return names


def refuse_reason(
    devnum: tuple[int, int], topology: Topology, mount_list: list[Mount], swaps: str
) -> str | None:
    """Why the device must not be formatted, or None."""
    name = topology.name_of(devnum)
    if name is None:
        return "the kernel does not list it as a block device"
    disk = topology.disk_of(name)
    if disk in system_disks(topology, mount_list, swaps):
        return f"it is the system disk ({disk} holds /, /boot or swap), or part of it"
    involved = {name, *topology.partitions(name)}
    for m in mount_list:
        if m.devnum[0] == 0:
            continue
        other = topology.name_of(m.devnum)
        if other in involved:
            return f"{other} is mounted at {m.mountpoint}; unmount it first"
    for part in sorted(involved):
        if topology.holders(part):
            return f"{part} is in use by {', '.join(topology.holders(part))} (LVM, RAID or crypt)"
    for line in swaps.splitlines()[1:]:
        source = line.split()[0] if line.split() else ""
        if source.startswith("/dev/") and Path(os.path.realpath(source)).name in involved:
            return f"{Path(source).name} is in use as swap"
    return None


def block_devnum(device: str) -> tuple[int, int]:
    try:
        st = Path(device).stat()
    except OSError as exc:
        raise UsageError(f"{device}: {exc.strerror}") from None
    if not stat.S_ISBLK(st.st_mode):
        raise UsageError(f"{device} is not a block device")
    return os.major(st.st_rdev), os.minor(st.st_rdev)


def format_drive(device: str, label: str) -> None:
    """Wipe old signatures (a stale partition table would confuse blkid) and make ext4."""
    for argv in (
        ["wipefs", "--all", "--force", device],
        # No reserved blocks: the daemon runs as root, which ignores them anyway.
        ["mkfs.ext4", "-q", "-F", "-m", "0", "-L", label, device],
    ):
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise DriveError(f"{argv[0]} {device} failed: {proc.stderr.strip()}")
