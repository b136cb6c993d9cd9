"""`bluegrass-cloud repair`: a damaged repository healed from a Pi's drive, made by the real
appliance mirroring this data root (the embedded setup, cloud.url = file://DATA). The damage
is a byte flipped in a pack, as a disk leaves it (issue 16 part 6)."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from bluegrass.cloud.accounts import Accounts

from tests.appliance.conftest import Appliance
from tests.cloud.conftest import Run, one_line_error, tree_state
from tests.cloud.test_cli import make_user
from tests.support.damage import flip_in_pack
from tests.support.s3 import S3Server
from tests.support.s3 import s3 as s3  # a fixture, used by name


def head(repo: Path) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(repo), "rev-parse", "main"], capture_output=True, text=True
    ).stdout.strip()


def blob(content: bytes) -> str:
    return (
        subprocess.run(
            ["git", "hash-object", "--stdin"], input=content, capture_output=True, check=True
        )
        .stdout.decode()
        .strip()
    )


@dataclass
class Setup:
    tree: Path
    repo: Path
    drive: Path
    pi: Appliance
    mirrored: str  # the head the Pi's drive has
    newest: str  # the cloud's head: one snapshot beyond the drive's
    photo: str  # a blob the drive has too
    late: str  # a blob only the cloud has


@pytest.fixture
def setup(cloud: Run, data: Path, tmp_path: Path) -> Setup:
    tree = make_user(cloud, data)
    photo = os.urandom(200_000)
    (tree / "photo.bin").write_bytes(photo)
    (tree / "a.txt").write_text("first\n")
    cloud("commit")
    (tree / "a.txt").write_text("second\n")
    cloud("commit")
    repo = data / "repos" / "alice" / "docs.git"
    pi = Appliance(tmp_path / "pi")
    pi.configure(f'[cloud]\nurl = "file://{data}"\n')
    drive = tmp_path / "drive"
    pi.global_args = ["--drive-dir", str(drive)]
    assert pi.json("mirror")["outcome"] == "ok"
    mirrored = head(repo)
    late = os.urandom(150_000)
    (tree / "late.bin").write_bytes(late)
    cloud("commit")
    cloud("maintain")
    return Setup(tree, repo, drive, pi, mirrored, head(repo), blob(photo), blob(late))


def test_repair_from_the_drive_heals_keeps_newer_snapshots_and_commits_resume(
    cloud: Run, data: Path, setup: Setup
) -> None:
    flip_in_pack(setup.repo, setup.photo)
    (setup.tree / "b.txt").write_text("after the damage\n")
    refused = cloud("commit", check=False)
    assert refused.returncode == 1 and "damaged" in refused.stderr
    assert head(setup.repo) == setup.newest

    out = json.loads(
        cloud("repair", "alice", "docs", "--from-drive", str(setup.drive), "--json").stdout
    )

    assert out["head"] == setup.newest and out["kept_beyond_source"] == 1 and out["lost"] == []
    assert any(setup.photo in p for p in out["problems"]), out["problems"]
    assert json.loads(cloud("verify", "--json").stdout)["ok"]
    # The damaged repository is kept aside, out of every command's way.
    aside = Path(out["damaged_copy"])
    assert aside.is_dir() and not aside.name.endswith(".git")
    # Commits resume, and so does the Pi's mirror.
    done = json.loads(cloud("commit", "--json").stdout)
    assert done["errors"] == [] and done["segments"][0]["committed"]
    assert setup.pi.json("mirror")["outcome"] == "ok"
    assert head(setup.drive / "bluegrass" / "alice" / "docs.git") == head(setup.repo)
    with Accounts.open(data) as accounts:
        last = accounts.last_job("integrity", "alice", "docs")
    assert last is not None and last.outcome == "ok" and "verify passes" in last.detail


def test_snapshots_only_the_cloud_had_are_named_and_refused_without_force(
    cloud: Run, data: Path, setup: Setup
) -> None:
    flip_in_pack(setup.repo, setup.late)
    cloud("verify", check=False)  # marks it
    before = tree_state(setup.repo)

    proc = cloud("repair", "alice", "docs", "--from-drive", str(setup.drive), check=False)

    error = one_line_error(proc)
    assert setup.newest[:12] in error and "--force" in error, error
    assert tree_state(setup.repo) == before
    assert sorted(p.name for p in setup.repo.parent.iterdir()) == ["docs.git"]

    out = json.loads(
        cloud(
            "repair", "alice", "docs", "--from-drive", str(setup.drive), "--force", "--json"
        ).stdout
    )
    assert out["head"] == setup.mirrored
    assert [lost["commit"] for lost in out["lost"]] == [setup.newest]
    assert json.loads(cloud("verify", "--json").stdout)["ok"]
    assert cloud("commit").returncode == 0


def test_bad_input_is_one_line_and_changes_nothing(
    cloud: Run, data: Path, setup: Setup, tmp_path: Path
) -> None:
    drive = str(setup.drive)
    before = tree_state(setup.repo)
    not_damaged = one_line_error(
        cloud("repair", "alice", "docs", "--from-drive", drive, check=False)
    )
    assert "not damaged" in not_damaged and "--even-if-sound" in not_damaged
    assert tree_state(setup.repo) == before
    flip_in_pack(setup.repo, setup.photo)
    marked = cloud("verify", check=False)
    assert marked.returncode == 1, marked.stdout + marked.stderr
    before = tree_state(setup.repo)
    for args, expected in (
        (("bob", "docs", "--from-drive", drive), "unknown user 'bob'"),
        (("alice", "music", "--from-drive", drive), "unknown segment alice/music"),
        (("alice", "docs", "--from-drive", str(tmp_path)), "not a Bluegrass drive"),
        (("alice", "Bad Name", "--from-drive", drive), "segment"),
    ):
        error = one_line_error(cloud("repair", *args, check=False))
        assert expected in error, error
    cloud("user", "add", "bob")
    (data / "files" / "bob" / "docs").mkdir()
    (data / "files" / "bob" / "docs" / "x.txt").write_text("x\n")
    cloud("commit", "--user", "bob")
    error = one_line_error(cloud("repair", "bob", "docs", "--from-drive", drive, check=False))
    assert "holds no history of bob/docs" in error, error
    assert tree_state(setup.repo) == before
    assert sorted(p.name for p in setup.repo.parent.iterdir()) == ["docs.git"]


def test_repair_from_the_replica(cloud: Run, data: Path, setup: Setup, s3: S3Server) -> None:
    """The replica as the good copy: replicated after the newest snapshot, so it holds all."""
    config = data / "bluegrass-cloud.toml"
    config.write_text(s3.config_text())
    cloud("replicate")
    flip_in_pack(setup.repo, setup.photo)
    assert cloud("commit", check=False).returncode == 1

    out = json.loads(cloud("repair", "alice", "docs", "--from-replica", "--json").stdout)

    assert out["head"] == setup.newest and out["lost"] == [] and "replica" in out["source"]
    assert json.loads(cloud("verify", "--json").stdout)["ok"]
    assert cloud("commit").returncode == 0
    assert not any(p.name.startswith("bluegrass-repair-") for p in data.iterdir())


def test_repair_from_a_replica_that_lacks_the_segment_is_one_line(
    cloud: Run, data: Path, setup: Setup, s3: S3Server
) -> None:
    config = data / "bluegrass-cloud.toml"
    config.write_text(s3.config_text())
    flip_in_pack(setup.repo, setup.photo)
    assert cloud("verify", check=False).returncode == 1  # marks it
    before = tree_state(setup.repo)
    error = one_line_error(cloud("repair", "alice", "docs", "--from-replica", check=False))
    assert "alice" in error, error
    assert tree_state(setup.repo) == before


def test_a_sound_repository_is_rebuilt_only_when_asked(
    cloud: Run, data: Path, setup: Setup
) -> None:
    out = json.loads(
        cloud(
            "repair", "alice", "docs", "--from-drive", str(setup.drive), "--even-if-sound", "--json"
        ).stdout
    )
    assert out["problems"] == [] and out["head"] == setup.newest and out["lost"] == []
    assert json.loads(cloud("verify", "--json").stdout)["ok"]
    assert cloud("log", "alice", "docs").stdout.count("\n") >= 3
