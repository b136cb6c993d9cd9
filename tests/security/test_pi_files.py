"""Finding 11 of issue 13: the Pi's pull of the latest files and symlinks.

A link on a laptop reaches the cloud as a small file `NAME.rclonelink` holding its target, and
the Pi's pull makes it a real symlink on the drive again (links are the user's data). Then:
a folder of the same name on the cloud made every later pull of that segment fail (nothing
new deleted, the folder never pulled), and a link swapped for a file vanished from the Pi's
copy for one pull that reported "ok". Now one bad entry is reported and the rest of the
segment is pulled (the pull is not clean, never "ok"), a kind change (link to file, file to
link, link to folder) arrives in one pull, and nothing is written through a link out of its
segment.

Everything runs for real: `bluegrass-appliance files` pulling with the pinned rclone from
`rclone serve sftp --read-only` on loopback, over the cloud's files as the cloud stores them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.appliance.conftest import (
    USER,
    Appliance,
    CloudData,
    enrollment,
    sftp_server,
)
from tests.appliance.fakecloud import FakeCloud


# The appliance tests' fixtures, made here: this file runs alone (tests/security/conftest.py).
@pytest.fixture
def appliance(tmp_path: Path) -> Appliance:
    return Appliance(tmp_path / "state")


@pytest.fixture
def cloud_data(tmp_path: Path) -> CloudData:
    return CloudData(tmp_path / "cloud")


@pytest.fixture
def fake_cloud(cloud_data: CloudData) -> Iterator[FakeCloud]:
    (cloud_data.root / "repos").mkdir(parents=True, exist_ok=True)
    with FakeCloud(cloud_data.root / "repos", {USER: enrollment(0).password}) as server:
        yield server


@contextmanager
def enrolled_pi(
    appliance: Appliance, cloud_data: CloudData, fake_cloud: FakeCloud, tmp_path: Path
) -> Iterator[Path]:
    """The Pi enrolled against a real sftp endpoint serving the cloud's files; yields the
    drive's copy of segment `docs`."""
    cloud_data.commit("docs")  # the segment is listed once it has a history
    keys = tmp_path / "keys"
    keys.mkdir()
    drive = tmp_path / "drive"
    code = enrollment(fake_cloud.port)
    with sftp_server(cloud_data.root / "files" / USER, USER, code.password, keys) as (port, key):
        appliance.enroll(enrollment(fake_cloud.port, port, key))
        appliance.global_args = ["--drive-dir", str(drive)]
        yield drive / "bluegrass" / USER / "docs"


def pull(appliance: Appliance) -> dict:
    result = appliance.json("files")
    assert result["outcome"] not in ("cloud-unreachable", "cloud-refused"), result
    return result


def test_a_link_and_a_folder_of_the_same_name_cost_the_link_only(
    appliance: Appliance, cloud_data: CloudData, fake_cloud: FakeCloud, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    folder = cloud_data.files("docs")
    (folder / "esc.rclonelink").write_text(str(outside))
    (folder / "notes.txt").write_text("notes\n")
    with enrolled_pi(appliance, cloud_data, fake_cloud, tmp_path) as copy:
        first = pull(appliance)
        assert first["outcome"] == "ok", first
        assert os.readlink(copy / "esc") == str(outside)  # a link stays a link

        # A folder named like the link, beside it on the cloud; meanwhile the user goes on.
        (folder / "esc").mkdir()
        (folder / "esc" / "planted.txt").write_text("through the link?\n")
        (folder / "more.txt").write_text("more\n")
        (folder / "notes.txt").unlink()

        for _ in range(2):  # and so for every later pull, not just the first
            second = pull(appliance)
            assert second["outcome"] == "failed", second  # not clean: never "ok"
            (result,) = second["segments"]
            assert not result["ok"] and "esc" in result["message"], result
            assert "link" in result["message"], result
            # The rest of the segment is pulled, deletions included.
            assert (copy / "more.txt").read_text() == "more\n"
            assert not (copy / "notes.txt").exists()
            assert (copy / "esc").is_dir() and not (copy / "esc").is_symlink()
            assert (copy / "esc" / "planted.txt").read_text() == "through the link?\n"
            assert list(outside.iterdir()) == []

        # Once the cloud's tree can be held again, the pull is clean.
        (folder / "esc.rclonelink").unlink()
        third = pull(appliance)
        assert third["outcome"] == "ok", third
        assert (copy / "esc" / "planted.txt").is_file()


def test_a_link_swapped_for_a_file_or_a_folder_arrives_in_one_pull(
    appliance: Appliance, cloud_data: CloudData, fake_cloud: FakeCloud, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    folder = cloud_data.files("docs")
    (folder / "a.txt").write_text("a\n")
    (folder / "x.rclonelink").write_text("a.txt")
    (folder / "y").write_text("y was a file\n")
    (folder / "z.rclonelink").write_text(str(outside))
    (folder / "w.rclonelink").write_text("sub")
    (folder / "sub").mkdir()
    (folder / "sub" / "in-sub.txt").write_text("in sub\n")
    (folder / "v").mkdir()
    (folder / "v" / "in-v.txt").write_text("in v\n")
    with enrolled_pi(appliance, cloud_data, fake_cloud, tmp_path) as copy:
        first = pull(appliance)
        assert first["outcome"] == "ok", first
        assert os.readlink(copy / "x") == "a.txt" and os.readlink(copy / "z") == str(outside)

        # On a laptop: x the link is now a file, y the file a link.
        (folder / "x.rclonelink").unlink()
        (folder / "x").write_text("x is a file now\n")
        (folder / "y").unlink()
        (folder / "y.rclonelink").write_text("a.txt")

        second = pull(appliance)

        assert second["outcome"] == "ok", second
        assert not (copy / "x").is_symlink() and (copy / "x").read_text() == "x is a file now\n"
        assert os.readlink(copy / "y") == "a.txt"

        # Then z the link (out of the segment) is a folder, w, a link to a folder of the
        # segment, is replaced by a folder of its own, and the folder v by a file.
        (folder / "z.rclonelink").unlink()
        (folder / "z").mkdir()
        (folder / "z" / "planted.txt").write_text("z is a folder now\n")
        (folder / "w.rclonelink").unlink()
        (folder / "w").mkdir()
        (folder / "w" / "own.txt").write_text("w's own\n")
        (folder / "v" / "in-v.txt").unlink()
        (folder / "v").rmdir()
        (folder / "v").write_text("v is a file now\n")

        third = pull(appliance)

        assert third["outcome"] == "ok", third
        assert not (copy / "z").is_symlink()
        assert (copy / "z" / "planted.txt").read_text() == "z is a folder now\n"
        assert list(outside.iterdir()) == []
        assert not (copy / "w").is_symlink() and (copy / "w" / "own.txt").is_file()
        assert sorted(p.name for p in (copy / "sub").iterdir()) == ["in-sub.txt"]
        assert (copy / "a.txt").read_text() == "a\n"
        assert (copy / "v").read_text() == "v is a file now\n"


def test_a_link_pointing_out_of_the_segment_is_kept_and_never_followed(
    appliance: Appliance, cloud_data: CloudData, fake_cloud: FakeCloud, tmp_path: Path
) -> None:
    """A link into the drive's other folders (the mirror beside the copy) and one into the
    Pi's system: pulled as links; a later file or folder under the link's name is written in
    the segment, not through the link."""
    folder = cloud_data.files("docs")
    (folder / "mirror.rclonelink").write_text("../docs.git")
    (folder / "etc.rclonelink").write_text(str(tmp_path / "system"))
    (tmp_path / "system").mkdir()
    (tmp_path / "system" / "passwd").write_text("root:x:0:0\n")
    with enrolled_pi(appliance, cloud_data, fake_cloud, tmp_path) as copy:
        assert pull(appliance)["outcome"] == "ok"
        assert os.readlink(copy / "mirror") == "../docs.git"
        assert os.readlink(copy / "etc") == str(tmp_path / "system")

        (folder / "etc.rclonelink").unlink()
        (folder / "etc").mkdir()
        (folder / "etc" / "passwd").write_text("attacker::0:0\n")
        (folder / "mirror.rclonelink").unlink()
        (folder / "mirror").write_text("a file now\n")

        result = pull(appliance)

        assert result["outcome"] == "ok", result
        assert (tmp_path / "system" / "passwd").read_text() == "root:x:0:0\n"
        assert (copy / "etc" / "passwd").read_text() == "attacker::0:0\n"
        assert (copy / "mirror").read_text() == "a file now\n"
        mirror = copy.parent / "docs.git"
        assert not mirror.exists() or mirror.is_dir()
