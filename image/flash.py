"""`make flash DEVICE=/dev/sdX [IMAGE=...]`: write the appliance image to an SD card or USB stick.

    python3 image/flash.py --device /dev/sdX [--image FILE.img|.img.xz|.img.gz]

It never guesses the device. It refuses a device that is not a whole disk, is read-only,
is not removable (USB, SD/MMC or marked removable), is mounted (or has a mounted partition
or swap), holds this system (/, /boot, /usr, /var, swap) or the image file, is a loop, LVM,
RAID or device-mapper device, or is smaller than the image. It shows the model, size and
transport and asks for the device's name to be typed back. It writes with `bmaptool copy`
when the image has a .bmap (only the blocks that hold data, each checked), else decompresses
(xz, gzip or raw) and writes everything with progress; then it reads the card back and
compares hashes (the .bmap's ranges, or the whole image), and says what to do next.

The decisions are pure functions of `lsblk --json` output (`check_target`), tested against
fake listings. BLUEGRASS_FLASH_ALLOW_LOOP=1 lets a loop device through the removable check:
for the tests only, never for the system disk.
"""

from __future__ import annotations

import argparse
import fcntl
import gzip
import hashlib
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

ROOT = Path(__file__).resolve().parent.parent
CHUNK = 4 * 1024 * 1024
LSBLK_COLUMNS = (
    "NAME,KNAME,PATH,TYPE,RM,HOTPLUG,TRAN,SUBSYSTEMS,RO,SIZE,MODEL,VENDOR,SERIAL,MOUNTPOINTS"
)
PROTECTED_MOUNTS = ("/", "/boot", "/boot/firmware", "/boot/efi", "/usr", "/var", "[SWAP]")
ALLOW_LOOP_ENV = "BLUEGRASS_FLASH_ALLOW_LOOP"
BLKFLSBUF = 0x1261  # linux/fs.h: flush a block device's buffer cache
LARGE = 128 * 1000**3


class Refusal(Exception):
    """This device must not be written; the message says why, in one line."""


@dataclass
class Device:
    name: str
    path: str
    type: str
    removable: bool
    hotplug: bool
    transport: str
    subsystems: list[str]
    read_only: bool
    size: int
    model: str
    vendor: str
    serial: str
    mountpoints: list[str]
    children: list[Device] = field(default_factory=list)

    def all_mountpoints(self) -> list[str]:
        found = list(self.mountpoints)
        for child in self.children:
            found += child.all_mountpoints()
        return found

    def names(self) -> list[str]:
        found = [self.name]
        for child in self.children:
            found += child.names()
        return found

    def describe(self) -> str:
        label = " ".join(p for p in (self.vendor, self.model) if p) or "(no model)"
        transport = self.transport or "/".join(self.subsystems) or "?"
        serial = f", serial {self.serial}" if self.serial else ""
        return f"{self.path}: {label}, {human(self.size)}, {transport}{serial}"


def _flag(value: object) -> bool:
    # lsblk prints booleans, older versions "0"/"1" strings.
    return value in (True, 1, "1", "true")


def parse_lsblk(data: dict[str, object]) -> list[Device]:
    """Devices from `lsblk --json --bytes --tree -o LSBLK_COLUMNS` output."""

    def one(entry: dict[str, object]) -> Device:
        mounts_raw = entry.get("mountpoints") or (
            [entry.get("mountpoint")] if "mountpoint" in entry else []
        )
        assert isinstance(mounts_raw, list)
        children_raw = entry.get("children") or []
        assert isinstance(children_raw, list)
        return Device(
            name=str(entry.get("kname") or entry["name"]),
            path=str(entry.get("path") or f"/dev/{entry['name']}"),
            type=str(entry.get("type") or ""),
            removable=_flag(entry.get("rm")),
            hotplug=_flag(entry.get("hotplug")),
            transport=str(entry.get("tran") or ""),
            subsystems=[s for s in str(entry.get("subsystems") or "").split(":") if s],
            read_only=_flag(entry.get("ro")),
            size=int(entry.get("size") or 0),  # type: ignore[call-overload]
            model=str(entry.get("model") or "").strip(),
            vendor=str(entry.get("vendor") or "").strip(),
            serial=str(entry.get("serial") or "").strip(),
            mountpoints=[str(m) for m in mounts_raw if m],
            children=[one(c) for c in children_raw],
        )

    devices = data.get("blockdevices") or []
    assert isinstance(devices, list)
    return [one(d) for d in devices]


def find(devices: list[Device], name: str) -> Device | None:
    for device in devices:
        if device.name == name:
            return device
        found = find(device.children, name)
        if found is not None:
            return found
    return None


def top_level_of(devices: list[Device], name: str) -> Device | None:
    """The top-level device (a disk, a loop) whose tree holds `name`."""
    for device in devices:
        if name in device.names():
            return device
    return None


def protected_disks(devices: list[Device], extra_names: list[str] = []) -> dict[str, str]:  # noqa: B006
    """Top-level devices holding this system, name -> why (their mounts, or the image)."""
    found: dict[str, str] = {}
    for device in devices:
        system = [m for m in device.all_mountpoints() if m in PROTECTED_MOUNTS]
        if system:
            found[device.name] = "it holds this system (" + ", ".join(system) + ")"
    for name in extra_names:
        top = top_level_of(devices, name)
        if top is not None and top.name not in found:
            found[top.name] = "it holds the image file"
    return found


def is_removable(device: Device) -> bool:
    return (
        device.removable
        or device.hotplug
        or device.transport in ("usb", "mmc")
        or "usb" in device.subsystems
        or "mmc" in device.subsystems
    )


def check_target(
    devices: list[Device],
    name: str,
    image_size: int,
    protected: dict[str, str],
    allow_loop: bool = False,
) -> Device:
    """The device named `name` (a kernel name: sdb, mmcblk0, loop3) if it may be written."""
    device = find(devices, name)
    if device is None:
        raise Refusal(f"/dev/{name} is not a block device on this machine (lsblk does not list it)")
    if name in protected:
        raise Refusal(f"{device.path} is refused: {protected[name]}")
    top = top_level_of(devices, name)
    if top is not None and top.name != name:
        if device.type == "part":
            raise Refusal(f"{device.path} is a partition; give the whole device, {top.path}")
        raise Refusal(f"{device.path} is a {device.type} device on {top.path}, not a whole disk")
    if device.type == "loop":
        if not allow_loop:
            raise Refusal(f"{device.path} is a loop device (a file), not a card")
    elif device.type != "disk":
        raise Refusal(f"{device.path} is a {device.type or 'strange'} device, not a disk")
    if device.read_only:
        raise Refusal(f"{device.path} is read-only (a card's lock switch?)")
    if device.type == "disk" and not is_removable(device):
        raise Refusal(
            f"{device.path} is not removable (transport {device.transport or 'none'}): "
            "only USB, SD/MMC and removable devices are written"
        )
    mounts = device.all_mountpoints()
    if mounts:
        raise Refusal(
            f"{device.path} is in use: mounted at {', '.join(mounts)}; unmount it first "
            f"(umount {' '.join(mounts)})"
        )
    if device.size == 0:
        raise Refusal(f"{device.path} has no medium (size 0): is the card in?")
    if device.size < image_size:
        raise Refusal(
            f"{device.path} is too small: {human(device.size)}, the image needs {human(image_size)}"
        )
    return device


def human(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError


# -- the image -----------------------------------------------------------------------------


def open_image(path: Path) -> BinaryIO:
    if path.name.endswith(".xz"):
        return lzma.open(path, "rb")  # type: ignore[return-value]
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if path.name.endswith(".zip"):
        raise Refusal(f"{path.name}: unzip it first (pi-gen's default); or build with xz")
    return path.open("rb")


def image_size(path: Path) -> int:
    """The uncompressed size (streams through a compressed image once)."""
    if not path.name.endswith((".xz", ".gz")):
        return path.stat().st_size
    total = 0
    with open_image(path) as stream:
        while chunk := stream.read(CHUNK):
            total += len(chunk)
    return total


def find_bmap(image: Path) -> Path | None:
    """pi-gen names it after the uncompressed image without its image_ prefix."""
    name = image.name
    for suffix in (".xz", ".gz"):
        name = name.removesuffix(suffix)
    stem = name.removesuffix(".img")
    for candidate in (stem, stem.removeprefix("image_")):
        bmap = image.with_name(candidate + ".bmap")
        if bmap.exists():
            return bmap
    return None


def default_image() -> Path | None:
    candidates = [
        *(ROOT / "build" / "image-debian").glob("*.img"),
        *(ROOT / "build" / "image-debian").glob("*.img.xz"),
        *(ROOT / "build" / "pi-gen" / "deploy").glob("*.img.xz"),
        *(ROOT / "build" / "pi-gen" / "deploy").glob("*.img"),
    ]
    return max(candidates, key=lambda p: p.stat().st_mtime, default=None)


# -- writing and verifying ------------------------------------------------------------------


def progress(label: str) -> Callable[[int, int], None]:
    started = time.monotonic()
    last = [0.0]

    def show(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] < 1 and done < total:
            return
        last[0] = now
        rate = done / max(now - started, 1e-6)
        share = f"{100 * done / total:5.1f}%" if total else ""
        print(
            f"\r{label} {share} {human(done)} at {human(int(rate))}/s   ", end="", file=sys.stderr
        )
        if done >= total:
            print(file=sys.stderr)

    return show


def flush_device(fd: int) -> None:
    """Drop the kernel's cached copy so that reading back reads the medium."""
    os.fsync(fd)
    try:
        fcntl.ioctl(fd, BLKFLSBUF)
    except OSError:
        pass  # not a block device (tests write a file too)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def write_stream(image: Path, device: str, total: int) -> str:
    """Decompress and write the whole image; returns its sha256."""
    digest = hashlib.sha256()
    show = progress("writing")
    fd = os.open(device, os.O_WRONLY | os.O_EXCL | os.O_CLOEXEC)
    try:
        done = 0
        with open_image(image) as stream:
            while chunk := stream.read(CHUNK):
                view = memoryview(chunk)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                digest.update(chunk)
                done += len(chunk)
                show(done, total)
        flush_device(fd)
    finally:
        os.close(fd)
    return digest.hexdigest()


def read_back(device: str, length: int) -> str:
    digest = hashlib.sha256()
    show = progress("verifying")
    fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        done = 0
        while done < length:
            chunk = os.read(fd, min(CHUNK, length - done))
            if not chunk:
                raise Refusal(f"{device} ended after {done} bytes, the image has {length}")
            digest.update(chunk)
            done += len(chunk)
            show(done, length)
    finally:
        os.close(fd)
    return digest.hexdigest()


@dataclass
class Bmap:
    block_size: int
    image_size: int
    checksum: str
    ranges: list[tuple[int, int, str]]  # first block, last block, checksum


def parse_bmap(path: Path) -> Bmap:
    root = ET.parse(path).getroot()  # noqa: S314 (our own build output)

    def text(tag: str) -> str:
        node = root.find(tag)
        if node is None or node.text is None:
            raise Refusal(f"{path.name}: no <{tag}>")
        return node.text.strip()

    ranges = []
    for node in root.iter("Range"):
        first, _, last = (node.text or "").strip().partition("-")
        ranges.append((int(first), int(last or first), node.get("chksum", "")))
    checksum = root.find("ChecksumType")
    return Bmap(
        block_size=int(text("BlockSize")),
        image_size=int(text("ImageSize")),
        checksum=(checksum.text or "sha256").strip() if checksum is not None else "sha1",
        ranges=ranges,
    )


def verify_bmap(device: str, bmap: Bmap) -> list[str]:
    """Read back every mapped range; the ranges whose checksum differs."""
    bad = []
    total = sum((last - first + 1) * bmap.block_size for first, last, _ in bmap.ranges)
    show = progress("verifying")
    done = 0
    fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        for first, last, expected in bmap.ranges:
            digest = hashlib.new(bmap.checksum)
            offset = first * bmap.block_size
            end = min((last + 1) * bmap.block_size, bmap.image_size)
            while offset < end:
                chunk = os.pread(fd, min(CHUNK, end - offset), offset)
                if not chunk:
                    break
                digest.update(chunk)
                offset += len(chunk)
                done += len(chunk)
                show(done, total)
            if digest.hexdigest() != expected:
                bad.append(f"{first}-{last}")
    finally:
        os.close(fd)
    show(total, total)
    return bad


def write_with_bmaptool(image: Path, bmap: Path, device: str) -> None:
    subprocess.run(["bmaptool", "copy", "--bmap", str(bmap), str(image), device], check=True)
    fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    try:
        flush_device(fd)
    finally:
        os.close(fd)


NEXT_STEPS = """\
Done: {device} holds the Bluegrass image and reads back identical.

Next:
  1. Take the card out and put it back in: a partition named bootfs (or RASPIFIRM) appears.
  2. Edit bluegrass.toml on it (Wi-Fi, the enrollment code, an SSH key if you want SSH);
     every setting is explained in the file. Nothing in it is needed if the Pi has a cable.
  3. Eject the card, put it in the Pi, switch it on, wait 2-3 minutes.
  4. Open http://bluegrass.local (or the Pi's address) and finish the setup there.
"""


# -- the command --------------------------------------------------------------------------


def lsblk() -> list[Device]:
    done = subprocess.run(
        ["lsblk", "--json", "--bytes", "--tree", "-o", LSBLK_COLUMNS],
        capture_output=True,
        text=True,
        check=True,
    )
    return parse_lsblk(json.loads(done.stdout))


def source_device(path: Path) -> str | None:
    """The kernel name of the block device holding `path` (for "the image lives there")."""
    done = subprocess.run(
        ["findmnt", "-n", "-o", "SOURCE", "--target", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    source = done.stdout.strip().split("[")[0]
    if not source.startswith("/dev/"):
        return None
    return Path(os.path.realpath(source)).name


def confirm(device: Device, image: Path, size: int, answer: Callable[[str], str]) -> None:
    print(f"About to write {image.name} ({human(size)}) to", file=sys.stderr)
    print(f"  {device.describe()}", file=sys.stderr)
    if device.size > LARGE:
        print(
            f"  note: {human(device.size)} is large for a card; is it really the card?",
            file=sys.stderr,
        )
    print("EVERYTHING on it will be lost.", file=sys.stderr)
    typed = answer(f"Type the device name ({device.name}) to write it, anything else to stop: ")
    if typed.strip().removeprefix("/dev/") != device.name:
        raise Refusal("not confirmed; nothing was written")


def main(argv: list[str] | None = None, answer: Callable[[str], str] = input) -> int:
    parser = argparse.ArgumentParser(prog="make flash", description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="", help="the card, e.g. /dev/sdb or /dev/mmcblk0")
    parser.add_argument("--image", type=Path, help="default: the newest image under build/")
    args = parser.parse_args(argv)
    try:
        if not args.device:
            raise Refusal(
                "no device given: make flash DEVICE=/dev/sdX (lsblk -o NAME,SIZE,TRAN,MODEL "
                "lists them); it is never guessed"
            )
        image = args.image or default_image()
        if image is None or not image.is_file():
            raise Refusal(
                f"no image {'at ' + str(image) if image else 'under build/'}: "
                "make image-debian (or make image), or IMAGE=FILE"
            )
        if os.geteuid() != 0:
            raise Refusal("writing a device needs root: sudo make flash DEVICE=...")
        name = Path(os.path.realpath(args.device)).name
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or not Path(f"/dev/{name}").exists():
            raise Refusal(f"{args.device} is not a device")
        size = image_size(image)
        devices = lsblk()
        holder = source_device(image)
        protected = protected_disks(devices, [holder] if holder else [])
        allow_loop = os.environ.get(ALLOW_LOOP_ENV) == "1"
        device = check_target(devices, name, size, protected, allow_loop)
        confirm(device, image, size, answer)
        bmap = find_bmap(image)
        if bmap is not None and shutil.which("bmaptool"):
            print(f"writing with bmaptool ({bmap.name})", file=sys.stderr)
            write_with_bmaptool(image, bmap, device.path)
            bad = verify_bmap(device.path, parse_bmap(bmap))
            if bad:
                raise Refusal(f"read back differs from the image in blocks {', '.join(bad[:5])}")
        else:
            if bmap is not None:
                print(
                    "bmaptool not installed (apt-get install bmap-tools): writing all of it",
                    file=sys.stderr,
                )
            written = write_stream(image, device.path, size)
            if read_back(device.path, size) != written:
                raise Refusal(f"read back from {device.path} differs from the image: a bad card?")
        subprocess.run(["sync"], check=False)
        print(NEXT_STEPS.format(device=device.path))
        return 0
    except Refusal as exc:
        print(f"make flash: refused: {exc}", file=sys.stderr)
        return 1
    except (EOFError, KeyboardInterrupt):
        print("\nmake flash: stopped; nothing was written", file=sys.stderr)
        return 1
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"make flash: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
