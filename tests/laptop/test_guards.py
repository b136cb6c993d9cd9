"""The sync's guards against mass damage: files overwritten en masse (ransomware), and mass
deletes counted in files, through the real endpoint."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

import pytest

from tests.laptop.conftest import Laptop, SftpCloud

CHECK = ".bluegrass-check"
SIDECARS = ".bluegrass-meta"
CONFIRM = "bluegrass sync docs --confirm-changes"
RESTORE = "bluegrass sync docs --restore-from-cloud"


def digests(root: Path) -> dict[str, str]:
    """Every file under root but the sync's own (the check file; the devices' metadata
    sidecars, on the cloud): relative path → SHA-256 of its bytes."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != CHECK and p.relative_to(root).parts[0] != SIDECARS
    }


def make_documents(docs: Path, nested: bool) -> None:
    """Ten text files of 1-2 kB, an hour old; with `nested`, most in sub-folders."""
    an_hour_ago = time.time() - 3600
    for i in range(10):
        where = docs / f"year-{i % 3}" / "notes" if nested and i > 1 else docs
        where.mkdir(parents=True, exist_ok=True)
        path = where / f"letter-{i}.txt"
        path.write_text(f"Dear reader {i},\nthis is a plain letter, line after line.\n" * 30)
        os.utime(path, (an_hour_ago, an_hour_ago))


def encrypt_in_place(docs: Path) -> int:
    """What ransomware does here: every file's bytes replaced by as many random ones."""
    count = 0
    for path in docs.rglob("*.txt"):
        path.write_bytes(os.urandom(path.stat().st_size))
        count += 1
    return count


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "sub-folders"])
def test_ransomware_is_stopped_before_the_cloud_and_the_cloud_copy_restores(
    enrolled: Laptop, cloud: SftpCloud, nested: bool
):
    docs = enrolled.folder("docs")
    make_documents(docs, nested)
    enrolled.run("segment", "add", "docs", str(docs))
    enrolled.run("sync")
    remote = cloud.root / "docs"
    originals = digests(remote)
    assert len(originals) == 10
    assert encrypt_in_place(docs) == 10

    proc = enrolled.run("sync", check=False)
    assert proc.returncode == 3, proc.stdout + proc.stderr  # needs you
    assert digests(remote) == originals, "encrypted files reached the cloud"
    assert "stopped before copying 10 of 10 files changed on this computer" in proc.stderr
    assert "look encrypted" in proc.stderr
    assert CONFIRM in proc.stderr
    last = enrolled.segment_status("docs")["last_run"]
    assert last["outcome"] == "needs-user"
    assert last["command"] == CONFIRM
    assert RESTORE in last["action"]
    human = enrolled.run("status").stdout
    assert f"    {CONFIRM}" in human and RESTORE in human

    # The resync a user might reach for goes through the same guard.
    proc = enrolled.run("sync", "docs", "--resync", check=False)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert digests(remote) == originals, "a resync uploaded the encrypted files"

    # The way back: the cloud's copies return; the encrypted ones are kept aside.
    encrypted = digests(docs)
    out = enrolled.run("sync", "docs", "--restore-from-cloud").stdout
    assert digests(docs) == originals
    assert digests(remote) == originals
    assert "10 files of this computer differed from the cloud's copy" in out
    [kept] = (enrolled.state_dir / "segments" / "docs" / "replaced").iterdir()
    assert digests(kept) == encrypted
    assert enrolled.run("sync").returncode == 0


def test_a_mass_change_made_on_purpose_is_named_plainly_and_carried_when_confirmed(
    enrolled: Laptop, cloud: SftpCloud
):
    docs = enrolled.folder("docs")
    make_documents(docs, nested=True)
    enrolled.run("segment", "add", "docs", str(docs))
    enrolled.run("sync")
    for path in sorted(docs.rglob("*.txt"))[:7]:  # 7 of 10: more than the 50% default
        path.write_text(path.read_text().upper())

    proc = enrolled.run("sync", check=False)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "stopped before copying 7 of 10 files" in proc.stderr
    assert "encrypted" not in proc.stderr  # still text: not called ransomware
    wanted = digests(docs)
    assert digests(cloud.root / "docs") != wanted

    enrolled.run("sync", "docs", CONFIRM.split()[-1])
    assert digests(cloud.root / "docs") == wanted
    assert enrolled.segment_status("docs")["last_run"]["files_transferred"] == 7


def test_a_segments_own_change_limit_applies(enrolled: Laptop, cloud: SftpCloud):
    docs = enrolled.folder("docs")
    make_documents(docs, nested=False)
    enrolled.run("segment", "add", "docs", str(docs))
    config = enrolled.config_dir / "bluegrass.toml"
    config.write_text(config.read_text() + "max_change_percent = 80\n")  # [segments.docs] last
    enrolled.run("sync")
    assert enrolled.segment_status("docs")["max_change_percent"] == 80
    for path in sorted(docs.glob("*.txt"))[:7]:
        path.write_text(path.read_text() + "a postscript\n")
    enrolled.run("sync")  # 70% is within this segment's 80%
    assert digests(cloud.root / "docs") == digests(docs)


def test_a_few_edits_in_a_small_segment_are_not_stopped(enrolled: Laptop, cloud: SftpCloud):
    docs = enrolled.folder("docs")
    for name in ("a.txt", "b.txt", "c.txt"):
        (docs / name).write_text(f"{name}\n")
        os.utime(docs / name, (time.time() - 3600,) * 2)
    enrolled.run("segment", "add", "docs", str(docs))
    enrolled.run("sync")
    for name in ("a.txt", "b.txt"):  # two of three: a share, but an afternoon's work
        (docs / name).write_text(f"{name} edited\n")
    enrolled.run("sync")
    assert (cloud.root / "docs" / "b.txt").read_text() == "b.txt edited\n"


def test_a_mass_delete_in_many_folders_is_counted_in_files(enrolled: Laptop, cloud: SftpCloud):
    """rclone's abort counts folders as files ("17 of 23" for 8 of 10 photos)."""
    albums = enrolled.folder("albums")
    for i in range(10):
        (albums / f"album-{i}").mkdir()
        (albums / f"album-{i}" / "photo.jpg").write_text(f"photo {i}\n")
    enrolled.run("segment", "add", "albums", str(albums))
    enrolled.run("sync")
    for i in range(8):
        shutil.rmtree(albums / f"album-{i}")

    proc = enrolled.run("sync", check=False)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert len(list((cloud.root / "albums").glob("*/photo.jpg"))) == 10
    message = enrolled.segment_status("albums")["last_run"]["message"]
    assert "stopped before deleting 8 of 10 files on this computer" in message
