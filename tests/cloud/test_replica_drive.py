"""`rebuild --from-drive`: a Pi's drive made by the real appliance (`bluegrass-appliance
mirror` and `files` against a real `bluegrass-cloud run`), then a fresh data root rebuilt
from it: every snapshot restores byte-exact, `verify` passes, the live files are the drive's
latest ones (links as the sync endpoint stores them, the devices' sidecars back), and the
Pi, enrolled again, mirrors from the rebuilt cloud without a rewrite.

One module-wide world does the expensive part once; each test checks one promise.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from bluegrass.core import syncmeta

from tests.appliance.conftest import Appliance
from tests.appliance.test_real_cloud import running_cloud
from tests.cloud.conftest import Run, one_line_error
from tests.cloud.test_replica import as_json, days_ago, expected_tree, runner
from tests.core.conftest import Print, assert_same_tree, fingerprint
from tests.core.test_store_corpus import build_corpus

ALICE = "alice"
DOCS, NOTES = "documents", "notebook"
LATE = b"written after the last daily commit, pulled by the Pi\n"


def laptop_tree(folder: Path) -> None:
    """What a laptop has: an executable, a link, a nested and an empty folder, ns times."""
    (folder / "sub" / "empty").mkdir(parents=True)
    (folder / "notes.txt").write_bytes(b"my notes\n")
    (folder / "run.sh").write_bytes(b"#!/bin/sh\necho hi\n")
    (folder / "run.sh").chmod(0o750)
    (folder / "sub" / "deep.txt").write_bytes(b"deep\n")
    (folder / "to-notes").symlink_to("notes.txt")
    for n, path in enumerate(sorted(folder.rglob("*"), reverse=True)):
        ns = 1_700_000_000_123_456_789 + n * 1_000_000_007
        os.utime(path, ns=(ns, ns), follow_symlinks=False)


def upload_like_sftp(laptop: Path, live: Path) -> None:
    """The laptop's sync as the cloud's disk receives it over sftp: no bits (0644, 0755 for
    folders), whole seconds, a link as NAME.rclonelink holding its target; and the device's
    sidecar describing every entry as the laptop has it (bluegrass.core.syncmeta)."""
    for path in sorted(laptop.rglob("*")):
        rel = path.relative_to(laptop)
        st = path.lstat()
        seconds = st.st_mtime_ns // 1_000_000_000 * 1_000_000_000
        if path.is_symlink():
            dest = live / f"{rel}.rclonelink"
            dest.write_bytes(os.fsencode(str(path.readlink())))
        elif path.is_dir():
            dest = live / rel
            dest.mkdir(mode=0o755)
        else:
            dest = live / rel
            shutil.copyfile(path, dest)
            dest.chmod(0o644)
        os.utime(dest, ns=(seconds, seconds))
    meta = live / ".bluegrass-meta"
    meta.mkdir()
    records = syncmeta.describe(laptop, {}, time.time_ns())
    syncmeta.write(meta / "laptop-1.meta", records)


def links_as_stand_ins(live: Path) -> None:
    """The corpus's symlinks as the sync endpoint holds links (NAME.rclonelink): a real one
    to a folder would stop the user's logins (decision 11)."""
    for folder, dirs, files in os.walk(live):
        for name in [*dirs, *files]:
            path = Path(folder) / name
            if path.is_symlink():
                target = os.readlink(os.fsencode(path))
                st = path.lstat()
                path.unlink()
                stand_in = path.with_name(name + ".rclonelink")
                stand_in.write_bytes(target)
                os.utime(stand_in, ns=(st.st_mtime_ns, st.st_mtime_ns))


@dataclass
class World:
    base: Path
    first: Run
    fresh: Path
    cloud: Run
    drive: Path
    appliance: Appliance
    expected: dict[str, dict[bytes, Print]]
    notes_head: str
    first_log: dict[str, list[str]]
    drive_before: dict[bytes, Print]
    drive_after: dict[bytes, Print]
    rebuilt: dict


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("fromdrive")
    (base / "one").mkdir()
    drive = base / "drive"
    appliance = Appliance(base / "pi-state")
    with running_cloud(base / "one") as (cloud, _):
        first = runner(cloud.data)
        first("user", "add", ALICE)
        code = as_json(first("device", "add", ALICE, "--name", "pi", "--json"))
        live = cloud.data / "files" / ALICE / DOCS
        live.mkdir()
        skipped = build_corpus(live, base)
        expected: dict[str, dict[bytes, Print]] = {}
        before = expected_tree(live, skipped)
        out = as_json(first("commit", "--user", ALICE, "--date", days_ago(3), "--json"))
        expected[out["segments"][0]["commit"]] = before
        (live / "data" / "random-1.bin").write_bytes(b"changed on day two\n")
        (live / "data" / "random-0.bin").unlink()
        (live / "later" / "empty").mkdir(parents=True)
        (live / "later" / "added.txt").write_bytes(b"added on day two\n")
        before = expected_tree(live, skipped)
        out = as_json(first("commit", "--user", ALICE, "--date", days_ago(2), "--json"))
        expected[out["segments"][0]["commit"]] = before
        links_as_stand_ins(live)

        laptop = base / "laptop"
        laptop.mkdir()
        laptop_tree(laptop)
        notes = cloud.data / "files" / ALICE / NOTES
        notes.mkdir()
        upload_like_sftp(laptop, notes)
        out = as_json(first("commit", "--user", ALICE, "--json"))
        notes_head = next(s["commit"] for s in out["segments"] if s["segment"] == NOTES)
        # A file the next daily commit would have taken: only the Pi's copy has it now.
        (notes / "late.txt").write_bytes(LATE)

        appliance("enroll", code["enrollment_code"])
        appliance.global_args = ["--drive-dir", str(drive)]
        mirrored = appliance.json("mirror")
        assert mirrored["outcome"] == "ok", mirrored
        # The corpus holds what sftp cannot carry (a folder nobody may read): that segment's
        # pull is not clean, the rest of it and the other segment are pulled all the same.
        appliance.json("files")
        first_log = {
            seg: [s["commit"] for s in as_json(first("log", ALICE, seg, "--json"))["snapshots"]]
            for seg in (DOCS, NOTES)
        }

    fresh = base / "two" / "data"
    cloud = runner(fresh)
    drive_before = fingerprint(drive)
    rebuilt = as_json(cloud("rebuild", "--from-drive", str(drive), "--json"))
    drive_after = fingerprint(drive)
    yield World(
        base,
        first,
        fresh,
        cloud,
        drive,
        appliance,
        expected,
        notes_head,
        first_log,
        drive_before,
        drive_after,
        rebuilt,
    )


def test_every_user_and_segment_is_back_and_verify_passes(world: World) -> None:
    assert world.rebuilt["users"] == [ALICE]
    got = {s["segment"]: s for s in world.rebuilt["segments"]}
    assert set(got) == {DOCS, NOTES}
    assert got[NOTES]["head"] == world.notes_head
    assert all(s["live"] == "drive copy" for s in got.values())
    assert world.cloud("verify").returncode == 0
    users = as_json(world.cloud("user", "list", "--json"))["users"]
    assert [(u["user"], u["segments"]) for u in users] == [(ALICE, [DOCS, NOTES])]
    # No device came along: the drive holds no secrets, every device enrolls again.
    assert as_json(world.cloud("device", "list", ALICE, "--json"))["devices"] == []


def test_the_histories_are_the_same_commits(world: World) -> None:
    for segment, commits in world.first_log.items():
        log = as_json(world.cloud("log", ALICE, segment, "--json"))["snapshots"]
        assert [s["commit"] for s in log] == commits


def test_every_snapshot_restores_byte_exact(world: World) -> None:
    for n, (commit, expected) in enumerate(world.expected.items()):
        target = world.base / f"restored-{n}"
        world.cloud("restore", ALICE, DOCS, "--at", commit, "--to", str(target))
        assert_same_tree(expected, fingerprint(target))


def test_the_live_files_are_the_drive_copy_as_the_sync_endpoint_stores_them(world: World) -> None:
    live = world.fresh / "files" / ALICE / NOTES
    assert (live / "late.txt").read_bytes() == LATE
    assert (live / "to-notes.rclonelink").read_bytes() == b"notes.txt"
    assert not (live / "to-notes").exists() and not (live / "to-notes").is_symlink()
    assert (live / "sub" / "empty").is_dir()
    assert (live / ".bluegrass-meta" / "laptop-1.meta").is_file()
    # The next commit finds exactly what the old cloud had not committed yet: the links,
    # bits and nanosecond times all read back as they were.
    out = as_json(world.cloud("commit", "--user", ALICE, "--json"))
    notes = next(s for s in out["segments"] if s["segment"] == NOTES)
    assert (notes["added"], notes["changed"], notes["deleted"]) == (1, 0, 0), notes
    target = world.base / "restored-notes"
    world.cloud("restore", ALICE, NOTES, "--to", str(target))
    assert (target / "to-notes").readlink() == Path("notes.txt")
    assert (target / "run.sh").stat().st_mode & 0o777 == 0o750
    assert (target / "late.txt").read_bytes() == LATE


def test_the_drive_is_left_as_it_was(world: World) -> None:
    assert_same_tree(world.drive_before, world.drive_after)


def test_the_pi_enrolled_again_mirrors_the_rebuilt_cloud(world: World) -> None:
    """Same commits, so the Pi's append-only mirror takes the rebuilt histories as they are."""
    with running_cloud(world.fresh.parent) as (_, _port):
        code = as_json(world.cloud("device", "add", ALICE, "--name", "pi", "--json"))
        world.appliance("enroll", code["enrollment_code"])
        mirrored = world.appliance.json("mirror")
        assert mirrored["outcome"] == "ok", mirrored
        alerts = world.appliance.json("alerts")["alerts"]
        assert "rewrite" not in [a["kind"] for a in alerts]


def test_a_folder_that_is_not_a_drive_is_refused(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    (plain / "bluegrass" / ALICE).mkdir(parents=True)
    data = tmp_path / "data"
    line = one_line_error(runner(data)("rebuild", "--from-drive", str(plain), check=False))
    assert "not a Bluegrass drive" in line
    assert not data.exists()
    gone = str(tmp_path / "no")
    missing = one_line_error(runner(data)("rebuild", "--from-drive", gone, check=False))
    assert "is not a folder" in missing


def test_a_data_root_that_is_not_empty_is_refused(world: World, tmp_path: Path) -> None:
    before = sorted(p.name for p in world.fresh.iterdir())
    line = one_line_error(world.cloud("rebuild", "--from-drive", str(world.drive), check=False))
    assert "is not empty" in line
    assert sorted(p.name for p in world.fresh.iterdir()) == before
    # A data root holding only its configuration is what the command fills.
    data = tmp_path / "data"
    data.mkdir()
    (data / "bluegrass-cloud.toml").write_text('[server]\naddress = "backup.example.org"\n')
    (data / "stray.txt").write_text("x")
    line = one_line_error(runner(data)("rebuild", "--from-drive", str(world.drive), check=False))
    assert "stray.txt" in line
    assert sorted(p.name for p in data.iterdir()) == ["bluegrass-cloud.toml", "stray.txt"]


def test_the_command_says_what_the_operator_must_do(world: World, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "bluegrass-cloud.toml").write_text('[server]\naddress = "backup.example.org"\n')
    out = runner(data)("rebuild", "--from-drive", str(world.drive)).stdout
    assert "device add" in out and "user password" in out
    users = as_json(runner(data)("user", "list", "--json"))["users"]
    assert [u["user"] for u in users] == [ALICE]


def copy_of_drive(world: World, tmp_path: Path) -> Path:
    drive = tmp_path / "drive"
    shutil.copytree(world.drive, drive, symlinks=True)
    return drive


def test_without_a_files_copy_the_live_tree_is_the_newest_snapshot(
    world: World, tmp_path: Path
) -> None:
    drive = copy_of_drive(world, tmp_path)
    user = drive / "bluegrass" / ALICE
    shutil.rmtree(user / DOCS)  # files not pulled (files.enabled = false)
    shutil.rmtree(user / NOTES)
    (user / NOTES).mkdir()  # a pull that never got through leaves the folder empty
    data = tmp_path / "data"
    proc = runner(data)("rebuild", "--from-drive", str(drive), "--json")
    rebuilt = as_json(proc)
    assert {s["segment"]: s["live"] for s in rebuilt["segments"]} == {
        DOCS: "newest snapshot",
        NOTES: "newest snapshot",
    }
    assert "notebook: the drive's copy of the files is empty" in proc.stderr
    docs = data / "files" / ALICE / DOCS
    assert (docs / "later" / "added.txt").read_bytes() == b"added on day two\n"
    notes = data / "files" / ALICE / NOTES
    assert (notes / "to-notes.rclonelink").read_bytes() == b"notes.txt"
    assert (notes / "run.sh").read_bytes() == b"#!/bin/sh\necho hi\n"
    assert runner(data)("verify").returncode == 0


def test_a_damaged_mirror_fails_in_one_line_and_leaves_no_data_root(
    world: World, tmp_path: Path
) -> None:
    drive = copy_of_drive(world, tmp_path)
    mirror = drive / "bluegrass" / ALICE / f"{DOCS}.git"
    for pack in (mirror / "objects" / "pack").glob("*.pack"):
        pack.write_bytes(pack.read_bytes()[: pack.stat().st_size // 2])
    data = tmp_path / "data"
    cloud = runner(data)
    line = one_line_error(cloud("rebuild", "--from-drive", str(drive), check=False))
    assert f"{ALICE}/{DOCS}" in line or f"{DOCS}.git" in line, line
    assert not (data / ".bluegrass-data").exists()
    assert "no Bluegrass data root" in one_line_error(cloud("verify", check=False))
    # The same data root takes the rebuild again, from a sound drive.
    rebuilt = as_json(cloud("rebuild", "--from-drive", str(world.drive), "--json"))
    assert {s["segment"] for s in rebuilt["segments"]} == {DOCS, NOTES}
    assert cloud("verify").returncode == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="making a drive of another owner needs root")
def test_a_drive_written_by_another_user_is_read(world: World, tmp_path: Path) -> None:
    """The Pi writes its drive as root; the cloud runs as its own user. git refuses to fetch
    from another user's repository ("dubious ownership") unless told it is safe."""
    drive = copy_of_drive(world, tmp_path)
    for path in [drive, *drive.rglob("*")]:
        os.chown(path, 65534, 65534, follow_symlinks=False)
    data = tmp_path / "data"
    rebuilt = as_json(runner(data)("rebuild", "--from-drive", str(drive), "--json"))
    assert {s["segment"]: s["head"] for s in rebuilt["segments"]}[NOTES]
    assert runner(data)("verify").returncode == 0
