"""`drive prepare` and its guards, the drive filling up, `drive status` and `eject`."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from bluegrass.appliance import drive

from tests.appliance.conftest import (
    USER,
    Appliance,
    CloudData,
    enrollment,
    fsck,
    git,
    write_random,
)
from tests.appliance.fakecloud import FakeCloud

# -- the guards, on fake device listings (a real system disk is never put at risk) -----------


def fake_sysfs(root: Path, disks: dict[str, tuple[str, list[str]]]) -> Path:
    """sysfs as the kernel lays it out: devices/…/DISK/PART, class/block/* and dev/block/M:m
    links. `disks` maps a disk name to (its "M:m", its partitions)."""
    sysfs = root / "sys"
    (sysfs / "class" / "block").mkdir(parents=True)
    (sysfs / "dev" / "block").mkdir(parents=True)
    for disk, (devnum, parts) in disks.items():
        major, minor = (int(x) for x in devnum.split(":"))
        base = sysfs / "devices" / "platform" / "host0" / "block" / disk
        base.mkdir(parents=True)
        (base / "dev").write_text(devnum + "\n")
        (sysfs / "class" / "block" / disk).symlink_to(base)
        (sysfs / "dev" / "block" / devnum).symlink_to(base)
        for i, part in enumerate(parts, 1):
            (base / part).mkdir()
            (base / part / "partition").write_text(f"{i}\n")
            (sysfs / "class" / "block" / part).symlink_to(base / part)
            (sysfs / "dev" / "block" / f"{major}:{minor + i}").symlink_to(base / part)
    return sysfs


def mountinfo(*entries: tuple[str, str, str]) -> list[drive.Mount]:
    lines = [
        f"{20 + i} 1 {devnum} / {point} rw,relatime shared:1 - ext4 {source} rw"
        for i, (devnum, point, source) in enumerate(entries)
    ]
    return drive.parse_mountinfo("\n".join(lines))


SWAPS_NONE = "Filename Type Size Used Priority\n"


@pytest.fixture
def pi(tmp_path: Path) -> drive.Topology:
    # A Pi: the SD card (mmcblk0, boot and root partitions) and a USB disk sda with one part.
    return drive.Topology(
        fake_sysfs(
            tmp_path,
            {"mmcblk0": ("179:0", ["mmcblk0p1", "mmcblk0p2"]), "sda": ("8:0", ["sda1"])},
        )
    )


PI_MOUNTS = [
    ("179:2", "/", "/dev/mmcblk0p2"),
    ("179:1", "/boot/firmware", "/dev/mmcblk0p1"),
]


def test_guard_refuses_the_system_disk_and_its_partitions(pi: drive.Topology) -> None:
    mounts = mountinfo(*PI_MOUNTS)
    assert drive.system_disks(pi, mounts, SWAPS_NONE) == {"mmcblk0"}
    for devnum in ((179, 0), (179, 1), (179, 2)):
        reason = drive.refuse_reason(devnum, pi, mounts, SWAPS_NONE)
        assert reason is not None and "system disk" in reason, devnum
    assert drive.refuse_reason((8, 0), pi, mounts, SWAPS_NONE) is None
    assert drive.refuse_reason((8, 1), pi, mounts, SWAPS_NONE) is None


def test_guard_finds_a_root_on_lvm_or_crypt_through_its_slaves(tmp_path: Path) -> None:
    sysfs = fake_sysfs(tmp_path, {"sda": ("8:0", ["sda1", "sda2"]), "sdb": ("8:16", [])})
    # dm-0 (the root) lives on sda2: refusing sda is the point.
    dm = sysfs / "devices" / "virtual" / "block" / "dm-0"
    (dm / "slaves").mkdir(parents=True)
    (dm / "slaves" / "sda2").symlink_to(sysfs / "class" / "block" / "sda2")
    (sysfs / "class" / "block" / "dm-0").symlink_to(dm)
    (sysfs / "dev" / "block" / "254:0").symlink_to(dm)
    topology = drive.Topology(sysfs)
    mounts = mountinfo(("254:0", "/", "/dev/mapper/root"))
    assert drive.system_disks(topology, mounts, SWAPS_NONE) == {"sda"}
    assert "system disk" in (drive.refuse_reason((8, 0), topology, mounts, SWAPS_NONE) or "")
    assert drive.refuse_reason((8, 16), topology, mounts, SWAPS_NONE) is None


def test_guard_refuses_a_mounted_disk_or_partition_and_swap(pi: drive.Topology) -> None:
    mounts = mountinfo(*PI_MOUNTS, ("8:1", "/media/usb\\040stick", "/dev/sda1"))
    reason = drive.refuse_reason((8, 0), pi, mounts, SWAPS_NONE)
    assert reason is not None and "sda1 is mounted at /media/usb stick" in reason
    assert "mounted" in (drive.refuse_reason((8, 1), pi, mounts, SWAPS_NONE) or "")
    swaps = SWAPS_NONE + "/dev/sda1 partition 1048572 0 -2\n"
    # realpath of a /dev path that does not exist here is the path itself: name sda1.
    reason = drive.refuse_reason((8, 0), pi, mountinfo(*PI_MOUNTS), swaps)
    assert reason is not None and "swap" in reason


def test_mountinfo_unescapes_spaces() -> None:
    (found,) = mountinfo(("8:1", "/media/usb\\040stick", "/dev/sda1"))
    assert found.mountpoint == "/media/usb stick" and found.devnum == (8, 1)


# -- real loop devices ----------------------------------------------------------------------


@pytest.mark.root
def test_prepare_formats_a_loop_device_after_the_name_is_typed_back(
    appliance: Appliance, make_loop, tmp_path: Path
) -> None:
    loop = make_loop(64)
    device = loop.attach()

    wrong = appliance("drive", "prepare", device, input="/dev/sdz\n", check=False)
    assert wrong.returncode == 2 and "not confirmed" in wrong.stderr
    assert drive.probe(device) == {}, "the device was touched without confirmation"

    done = appliance("drive", "prepare", device, "--json", input=device + "\n")
    result = json.loads(done.stdout)
    found = drive.probe(device)
    assert found["TYPE"] == "ext4" and found["LABEL"] == "BLUEGRASS"
    where = tmp_path / "look"
    where.mkdir()
    subprocess.run(["mount", "-o", "ro", device, str(where)], check=True)
    try:
        marker = json.loads((where / ".bluegrass-drive").read_text())
        assert marker["id"] == result["id"] and marker["id"].startswith("bgd-")
        assert (where / "README").exists() and (where / "repository-format.md").exists()
        assert (where / "bluegrass").is_dir()
    finally:
        subprocess.run(["umount", str(where)], check=True)

    # Mounted, it is refused, and left alone.
    subprocess.run(["mount", device, str(where)], check=True)
    try:
        refused = appliance("drive", "prepare", device, "--yes", check=False)
        assert refused.returncode == 2
        assert f"is mounted at {where}" in refused.stderr, refused.stderr
        assert (where / ".bluegrass-drive").exists()
    finally:
        subprocess.run(["umount", str(where)], check=True)

    not_block = appliance("drive", "prepare", str(loop.image), "--yes", check=False)
    assert not_block.returncode == 2 and "not a block device" in not_block.stderr


@pytest.mark.root
@pytest.mark.slow
def test_drive_full_fails_clearly_and_damages_nothing(
    appliance: Appliance, cloud_data: CloudData, fake_cloud: FakeCloud, make_loop, tmp_path: Path
) -> None:
    loop = make_loop(40)
    device = loop.attach()
    appliance.enroll(enrollment(fake_cloud.port))
    mountpoint = tmp_path / "mnt"
    appliance.configure(f'[drive]\nmountpoint = "{mountpoint}"\n[files]\nenabled = false\n')
    appliance("drive", "prepare", device, "--yes")
    folder = cloud_data.files("docs")
    (folder / "small.txt").write_text("fits\n")
    before = cloud_data.commit("docs")
    assert appliance.json("mirror")["outcome"] == "ok"
    # The command line mounted the drive for the job and released it after.
    assert drive.mount_at(mountpoint) is None

    # 60 MB of incompressible data does not fit on a 40 MB drive.
    write_random(folder / "big.bin", 60 * 2**20)
    cloud_data.commit("docs")
    proc = appliance("mirror", check=False)

    assert proc.returncode == 1
    assert "drive is full" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    alerts = appliance.json("alerts")["alerts"]
    assert [a["kind"] for a in alerts] == ["drive-full"]
    subprocess.run(["mount", device, str(mountpoint)], check=True)
    try:
        mirror = mountpoint / "bluegrass" / USER / "docs.git"
        fsck(mirror)
        assert git("--git-dir", str(mirror), "rev-parse", "main").stdout.strip() == before
        # The interrupted pack is gone, so the space is back for the next try.
        assert not list((mirror / "objects" / "pack").glob("tmp_*"))
        assert os.statvfs(mountpoint).f_bavail * os.statvfs(mountpoint).f_frsize > 20 * 2**20
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)
