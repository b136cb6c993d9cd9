"""The latest files onto a drive that is full: said as such, nothing half-copied left, and
the next run after space is freed completes. A real loop-mounted ext4 and rclone over sftp."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.appliance.conftest import (
    USER,
    Appliance,
    CloudData,
    Loop,
    enrollment,
    sftp_server,
    write_random,
)
from tests.appliance.fakecloud import FakeCloud


def fill(path: Path, leave: int) -> Path:
    """A file that leaves `leave` bytes free on the file system of `path`."""
    filler = path / "filler"
    with filler.open("wb") as out:
        left = shutil.disk_usage(path).free - leave
        while left > 0:
            step = min(left, 1 << 20)
            out.write(b"\0" * step)
            left -= step
        out.flush()
        os.fsync(out.fileno())
    return filler


def test_files_onto_a_full_drive_say_so_leave_no_partial_and_recover(
    appliance: Appliance,
    cloud_data: CloudData,
    fake_cloud: FakeCloud,
    make_loop: Callable[[int], Loop],
    tmp_path: Path,
) -> None:
    folder = cloud_data.files("docs")
    for i in range(4):
        write_random(folder / f"photo-{i}.jpg", 2 << 20)
    cloud_data.commit("docs")
    loop = make_loop(32)
    subprocess.run(["mkfs.ext4", "-q", "-m", "0", str(loop.image)], check=True)
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    subprocess.run(["mount", loop.attach(), str(mountpoint)], check=True)
    drive = mountpoint / "drive"
    keys = tmp_path / "keys"
    keys.mkdir()
    code = enrollment(fake_cloud.port)
    try:
        with sftp_server(cloud_data.root / "files" / USER, USER, code.password, keys) as (
            port,
            key,
        ):
            appliance.enroll(enrollment(fake_cloud.port, port, key))
            appliance.global_args = ["--drive-dir", str(drive)]
            drive.mkdir()
            # Room for the marker and a photo and a half: rclone fills the rest to 0 bytes.
            filler = fill(mountpoint, 3 << 20)

            full = appliance.json("files")

            assert full["outcome"] == "drive-full", full
            assert "drive is full" in full["message"], full
            assert "free" in full["message"] and "needed" in full["message"], full
            copy = drive / "bluegrass" / USER / "docs"
            assert not [p.name for p in copy.rglob("*") if p.name.endswith(".partial")]
            assert "drive-full" in [a["kind"] for a in appliance.json("alerts")["alerts"]]

            filler.unlink()
            again = appliance.json("files")
            assert again["outcome"] == "ok", again
            for i in range(4):
                assert (copy / f"photo-{i}.jpg").read_bytes() == (
                    folder / f"photo-{i}.jpg"
                ).read_bytes()
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)
        loop.detach()
