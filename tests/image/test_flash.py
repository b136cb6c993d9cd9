"""`make flash`: every refusal against fake `lsblk --json` listings, then real writes to a loop
device (allowed only by the test switch BLUEGRASS_FLASH_ALLOW_LOOP=1), read back and compared."""

from __future__ import annotations

import gzip
import hashlib
import lzma
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, require_tool
from tests.image.conftest import image_module, require_root

flash = image_module("flash")
FLASH = ROOT / "image" / "flash.py"
GB = 1000**3
IMAGE = 2 * GB


def dev(name: str, **kw: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": name,
        "kname": name,
        "path": f"/dev/{name}",
        "type": "disk",
        "rm": False,
        "hotplug": False,
        "tran": None,
        "subsystems": "block:scsi:usb:pci",
        "ro": False,
        "size": 32 * GB,
        "model": "Card Reader",
        "vendor": "Generic",
        "serial": "000000264001",
        "mountpoints": [None],
    }
    entry.update(kw)
    return entry


def part(name: str, *mounts: str, **kw: Any) -> dict[str, Any]:
    return dev(name, type="part", mountpoints=list(mounts) or [None], **kw)


SYSTEM = dev(
    "nvme0n1",
    tran="nvme",
    subsystems="block:nvme:pci",
    model="Samsung SSD",
    vendor=None,
    size=512 * GB,
    children=[part("nvme0n1p1", "/boot/efi"), part("nvme0n1p2", "/")],
)
SD_CARD = dev("sdb", tran="usb", rm=True, children=[part("sdb1"), part("sdb2")])


def listing(*devices: dict[str, Any]) -> list[Any]:
    return flash.parse_lsblk({"blockdevices": [SYSTEM, *devices]})


def check(
    devices: list[Any],
    name: str,
    *,
    size: int = IMAGE,
    allow_loop: bool = False,
    extra: list[str] | None = None,
) -> Any:
    protected = flash.protected_disks(devices, extra or [])
    return flash.check_target(devices, name, size, protected, allow_loop)


def refused(devices: list[Any], name: str, **kw: Any) -> str:
    with pytest.raises(flash.Refusal) as caught:
        check(devices, name, **kw)
    return str(caught.value)


# -- accepted ---------------------------------------------------------------------------------


def test_usb_card_reader_accepted() -> None:
    device = check(listing(SD_CARD), "sdb")
    assert device.path == "/dev/sdb"
    assert device.describe() == "/dev/sdb: Generic Card Reader, 32.0 GB, usb, serial 000000264001"


def test_sd_slot_accepted_by_its_subsystem_even_when_not_marked_removable() -> None:
    slot = dev("mmcblk0", subsystems="block:mmc:mmc_host:platform", tran=None, rm=False)
    assert check(listing(slot), "mmcblk0").name == "mmcblk0"


def test_hotplug_disk_accepted() -> None:
    assert check(listing(dev("sdc", hotplug=True, tran="sata", subsystems="block:scsi:pci")), "sdc")


def test_old_lsblk_output_with_strings_and_single_mountpoint() -> None:
    devices = flash.parse_lsblk(
        {
            "blockdevices": [
                {
                    "name": "sdb",
                    "type": "disk",
                    "rm": "1",
                    "ro": "0",
                    "size": str(8 * GB),
                    "mountpoint": None,
                    "tran": "usb",
                }
            ]
        }
    )
    assert check(devices, "sdb").removable


# -- refused ----------------------------------------------------------------------------------


def test_no_device_given_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert flash.main([]) == 1
    assert "no device given" in capsys.readouterr().err


def test_unknown_device_refused() -> None:
    assert "not a block device" in refused(listing(SD_CARD), "sdz")


def test_partition_refused_naming_the_disk() -> None:
    message = refused(listing(SD_CARD), "sdb1")
    assert "partition" in message and "/dev/sdb" in message


def test_system_disk_refused() -> None:
    assert "holds this system (/boot/efi, /)" in refused(listing(SD_CARD), "nvme0n1")


def test_system_disk_refused_through_lvm_and_crypt() -> None:
    usb_system = dev(
        "sda",
        tran="usb",
        rm=True,
        children=[
            part("sda1", "/boot"),
            part(
                "sda2",
                children=[
                    dev("dm-0", type="crypt", children=[dev("dm-1", type="lvm", mountpoints=["/"])])
                ],
            ),
        ],
    )
    devices = flash.parse_lsblk({"blockdevices": [usb_system, SD_CARD]})
    assert "holds this system" in refused(devices, "sda")
    assert "not a whole disk" in refused(devices, "dm-1")


def test_swap_disk_refused() -> None:
    swap = dev("sdc", tran="usb", rm=True, children=[part("sdc1", "[SWAP]")])
    assert "holds this system ([SWAP])" in refused(listing(swap), "sdc")


def test_disk_holding_the_image_refused() -> None:
    usb = dev("sdc", tran="usb", rm=True, children=[part("sdc1", "/media/me/stick")])
    assert "holds the image file" in refused(listing(usb), "sdc", extra=["sdc1"])


def test_mounted_card_refused() -> None:
    card = dev(
        "sdb", tran="usb", rm=True, children=[part("sdb1", "/media/me/bootfs"), part("sdb2")]
    )
    message = refused(listing(card), "sdb")
    assert "mounted at /media/me/bootfs" in message and "umount" in message


def test_read_only_refused() -> None:
    assert "read-only" in refused(listing(dev("sdb", tran="usb", rm=True, ro=True)), "sdb")


def test_non_removable_disk_refused() -> None:
    sata = dev("sdb", tran="sata", subsystems="block:scsi:pci", model="WDC WD40")
    assert "not removable (transport sata)" in refused(listing(sata), "sdb")


def test_loop_device_refused_without_the_test_switch() -> None:
    loop = dev("loop3", type="loop", subsystems="block", model=None)
    assert "loop device" in refused(listing(loop), "loop3")
    assert check(listing(loop), "loop3", allow_loop=True).name == "loop3"


def test_test_switch_does_not_open_a_system_loop_device() -> None:
    loop_root = dev("loop0", type="loop", subsystems="block", mountpoints=["/"])
    assert "holds this system" in refused(listing(loop_root), "loop0", allow_loop=True)


def test_mounted_loop_refused_even_with_the_switch() -> None:
    loop = dev("loop4", type="loop", subsystems="block", mountpoints=["/mnt/x"])
    assert "mounted" in refused(listing(loop), "loop4", allow_loop=True)


def test_other_device_types_refused() -> None:
    rom = dev("sr0", type="rom", tran="sata", rm=True)
    assert "rom device, not a disk" in refused(listing(rom), "sr0")
    md = dev("md0", type="raid1", rm=True)
    assert "raid1 device, not a disk" in refused(listing(md), "md0")


def test_no_medium_refused() -> None:
    assert "no medium" in refused(listing(dev("sdb", tran="usb", rm=True, size=0)), "sdb")


def test_too_small_refused() -> None:
    small = dev("sdb", tran="usb", rm=True, size=1 * GB)
    assert "too small: 1.0 GB, the image needs 2.0 GB" in refused(listing(small), "sdb")


def test_confirmation_needs_the_device_name_typed_back(capsys: pytest.CaptureFixture[str]) -> None:
    device = check(listing(SD_CARD), "sdb")
    image = Path("/x/bluegrass.img")
    with pytest.raises(flash.Refusal, match="not confirmed"):
        flash.confirm(device, image, IMAGE, lambda prompt: "yes")
    with pytest.raises(flash.Refusal, match="not confirmed"):
        flash.confirm(device, image, IMAGE, lambda prompt: "sda")
    flash.confirm(device, image, IMAGE, lambda prompt: "sdb")
    flash.confirm(device, image, IMAGE, lambda prompt: "/dev/sdb\n")
    shown = capsys.readouterr().err
    assert "Generic Card Reader, 32.0 GB, usb" in shown and "EVERYTHING" in shown


def test_bmap_found_under_pi_gen_and_our_names(tmp_path: Path) -> None:
    pigen = tmp_path / "image_2026-06-18-bluegrass.img.xz"
    pigen.touch()
    (tmp_path / "2026-06-18-bluegrass.bmap").touch()
    assert flash.find_bmap(pigen) == tmp_path / "2026-06-18-bluegrass.bmap"
    ours = tmp_path / "bluegrass-debian-trixie-arm64.img"
    ours.touch()
    assert flash.find_bmap(ours) is None
    (tmp_path / "bluegrass-debian-trixie-arm64.bmap").touch()
    assert flash.find_bmap(ours) == tmp_path / "bluegrass-debian-trixie-arm64.bmap"


# -- real writes to a loop device -------------------------------------------------------------


def make_image(path: Path, size: int) -> bytes:
    """An image with data and holes (so that a .bmap maps only part of it)."""
    data = bytearray(size)
    for start in range(0, size, 3 * 1024 * 1024):
        block = hashlib.sha256(str(start).encode()).digest() * (1024 * 1024 // 32)
        data[start : start + len(block)] = block[: size - start]
    path.write_bytes(bytes(data))
    return bytes(data)


@pytest.fixture
def loop_device(tmp_path: Path) -> Any:
    require_root()
    require_tool("losetup")
    backing = tmp_path / "card.bin"
    backing.write_bytes(b"\xaa" * (24 * 1024 * 1024))  # old contents: not zeros
    done = subprocess.run(
        ["losetup", "--find", "--show", str(backing)], capture_output=True, text=True, check=True
    )
    device = done.stdout.strip()
    try:
        yield device, backing
    finally:
        subprocess.run(["losetup", "-d", device], check=False)


def run_flash(
    device: str, image: Path, typed: str, allow: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != flash.ALLOW_LOOP_ENV}
    if allow:
        env[flash.ALLOW_LOOP_ENV] = "1"
    return subprocess.run(
        [sys.executable, str(FLASH), "--device", device, "--image", str(image)],
        input=typed + "\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.mark.root
def test_loop_refused_for_real_without_the_switch(loop_device: Any, tmp_path: Path) -> None:
    device, backing = loop_device
    image = tmp_path / "bluegrass.img"
    make_image(image, 8 * 1024 * 1024)
    done = run_flash(device, image, Path(device).name, allow=False)
    assert done.returncode == 1
    assert "loop device" in done.stderr
    assert backing.read_bytes()[:16] == b"\xaa" * 16


@pytest.mark.root
@pytest.mark.parametrize("kind", ["xz", "gz", "raw"])
def test_real_write_to_loop_device_read_back(loop_device: Any, tmp_path: Path, kind: str) -> None:
    device, backing = loop_device
    raw = tmp_path / "bluegrass.img"
    data = make_image(raw, 10 * 1024 * 1024 + 4096)
    image = raw
    if kind == "xz":
        image = tmp_path / "bluegrass.img.xz"
        image.write_bytes(lzma.compress(data))
    elif kind == "gz":
        image = tmp_path / "bluegrass.img.gz"
        image.write_bytes(gzip.compress(data))
    # A wrong name typed back writes nothing.
    done = run_flash(device, image, "sda")
    assert done.returncode == 1 and "not confirmed" in done.stderr
    assert backing.read_bytes()[:16] == b"\xaa" * 16
    done = run_flash(device, image, Path(device).name)
    assert done.returncode == 0, done.stderr
    assert "reads back identical" in done.stdout and "bluegrass.toml" in done.stdout
    assert "verifying" in done.stderr
    written = backing.read_bytes()
    assert written[: len(data)] == data
    assert written[len(data) :] == b"\xaa" * (len(written) - len(data))


@pytest.mark.root
def test_real_write_with_bmaptool_and_bmap_read_back(loop_device: Any, tmp_path: Path) -> None:
    require_tool("bmaptool")
    device, backing = loop_device
    raw = tmp_path / "bluegrass.img"
    with raw.open("wb") as out:  # sparse: 1 MiB of data, a hole, 1 MiB of data
        out.write(os.urandom(1024 * 1024))
        out.seek(8 * 1024 * 1024)
        out.write(os.urandom(1024 * 1024))
    data = raw.read_bytes()
    subprocess.run(
        ["bmaptool", "create", "-o", str(tmp_path / "bluegrass.bmap"), str(raw)],
        check=True,
        capture_output=True,
    )
    done = run_flash(device, raw, Path(device).name)
    assert done.returncode == 0, done.stderr
    assert "writing with bmaptool" in done.stderr
    written = backing.read_bytes()
    assert written[: 1024 * 1024] == data[: 1024 * 1024]
    assert written[8 * 1024 * 1024 : 9 * 1024 * 1024] == data[8 * 1024 * 1024 :]
    # The hole was not written (old contents stay): only mapped blocks are copied.
    assert written[4 * 1024 * 1024 : 4 * 1024 * 1024 + 16] == b"\xaa" * 16

    # The read-back check catches a card that does not hold what was written.
    bmap = flash.parse_bmap(tmp_path / "bluegrass.bmap")
    assert flash.verify_bmap(device, bmap) == []
    with open(device, "r+b") as card:
        card.seek(8 * 1024 * 1024 + 100)
        card.write(b"\x00\x01\x02")
    assert flash.verify_bmap(device, bmap) != []


@pytest.mark.root
def test_read_back_detects_a_difference(loop_device: Any, tmp_path: Path) -> None:
    device, _backing = loop_device
    image = tmp_path / "bluegrass.img"
    data = make_image(image, 4 * 1024 * 1024)
    written = flash.write_stream(image, device, len(data))
    assert written == hashlib.sha256(data).hexdigest()
    assert flash.read_back(device, len(data)) == written
    with open(device, "r+b") as card:
        card.seek(1234)
        card.write(b"\xff")
    assert flash.read_back(device, len(data)) != written
