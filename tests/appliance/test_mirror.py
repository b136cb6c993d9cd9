"""The append-only mirror over git smart HTTP, with a plain folder standing in for the drive."""

from __future__ import annotations

import filecmp
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from bluegrass.appliance import settings as pi_settings
from bluegrass.appliance.context import Appliance as PiContext
from bluegrass.appliance.mirror import MAX_PACKS
from bluegrass.appliance.panelbackend import PiBackend
from bluegrass.panel.backend import Severity

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
from tests.conftest import VENV_BIN
from tests.support.damage import flip, flip_in_pack


def setup(appliance: Appliance, cloud: FakeCloud, drive: Path) -> None:
    appliance.enroll(enrollment(cloud.port))
    appliance.global_args = ["--drive-dir", str(drive)]


def mirror_of(drive: Path, segment: str) -> Path:
    return drive / "bluegrass" / USER / f"{segment}.git"


def test_mirror_fetches_every_segment_with_append_only_settings(
    appliance: Appliance, cloud_data: CloudData, fake_cloud: FakeCloud, tmp_path: Path
) -> None:
    (cloud_data.files("docs") / "letter.txt").write_text("dear grandma\n")
    (cloud_data.files("photos") / "cat.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    docs_head = cloud_data.commit("docs")
    photos_head = cloud_data.commit("photos")
    drive = tmp_path / "drive"
    setup(appliance, fake_cloud, drive)

    result = appliance.json("mirror")

    assert result["outcome"] == "ok", result
    mirror = mirror_of(drive, "docs")
    assert git("--git-dir", str(mirror), "rev-parse", "main").stdout.strip() == docs_head
    assert (
        git("--git-dir", str(mirror_of(drive, "photos")), "rev-parse", "main").stdout.strip()
        == photos_head
    )
    fsck(mirror)

    def config(key: str) -> list[str]:
        return git("--git-dir", str(mirror), "config", "--get-all", key).stdout.split("\n")[:-1]

    assert config("remote.origin.fetch") == ["refs/heads/*:refs/heads/*", "refs/tags/*:refs/tags/*"]
    assert config("transfer.fsckObjects") == ["true"]
    assert config("core.logAllRefUpdates") == ["always"]
    assert config("gc.reflogExpire") == ["never"]
    assert config("gc.auto") == ["0"]
    assert config("core.bigFileThreshold") == ["16m"]
    assert config("pack.threads") == ["1"]
    assert git("--git-dir", str(mirror), "config", "remote.origin.mirror", check=False).returncode
    assert (mirror / "info" / "attributes").read_text().startswith("* -text -eol -crlf -filter")
    # The device's password is nowhere on the drive, in clear or in Basic form.
    code = enrollment(fake_cloud.port)
    for path in drive.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert code.secret.encode() not in data, path
            assert b"Authorization" not in data, path
    # A reflog records the update, in a bare repository.
    assert (mirror / "logs" / "refs" / "heads" / "main").exists()
    # The README and the format description are at the drive's root.
    assert "git clone bluegrass/USER/SEGMENT.git" in (drive / "README").read_text()
    repo_format = Path(__file__).parents[2] / "docs" / "repository-format.md"
    assert (drive / "repository-format.md").read_bytes() == repo_format.read_bytes()

    # Unchanged cloud: nothing fetched, still ok.
    again = appliance.json("mirror")
    assert again["outcome"] == "ok"
    assert all(s["message"] == "up to date" for s in again["segments"])


def test_settings_are_corrected_and_an_unchanged_mirror_is_not_rewritten(
    appliance: Appliance, cloud_data: CloudData, fake_cloud: FakeCloud, tmp_path: Path
) -> None:
    (cloud_data.files("docs") / "a.txt").write_text("one\n")
    cloud_data.commit("docs")
    drive = tmp_path / "drive"
    setup(appliance, fake_cloud, drive)
    assert appliance.json("mirror")["outcome"] == "ok"
    mirror = mirror_of(drive, "docs")

    def config(key: str) -> list[str]:
        found = git("--git-dir", str(mirror), "config", "--get-all", key, check=False)
        return found.stdout.split("\n")[:-1]

    # A mirror configured by hand or by an earlier version: checks off, a force refspec, a
    # mirror remote, a duplicated key, the pack window caps this version no longer sets.
    for args in (
        ("transfer.fsckObjects", "false"),
        ("--add", "gc.auto", "1"),
        ("--replace-all", "remote.origin.fetch", "+refs/*:refs/*"),
        ("remote.origin.mirror", "true"),
        ("remote.origin.prune", "true"),
        ("core.packedGitLimit", "128m"),
        ("core.packedGitWindowSize", "16m"),
    ):
        git("--git-dir", str(mirror), "config", *args)
    (cloud_data.files("docs") / "a.txt").write_text("two\n")
    head = cloud_data.commit("docs")

    assert appliance.json("mirror")["outcome"] == "ok"

    assert git("--git-dir", str(mirror), "rev-parse", "main").stdout.strip() == head
    assert config("transfer.fsckObjects") == ["true"]
    assert config("gc.auto") == ["0"]
    assert config("remote.origin.fetch") == ["refs/heads/*:refs/heads/*", "refs/tags/*:refs/tags/*"]
    assert config("remote.origin.prune") == ["false"]
    assert config("remote.origin.mirror") == []
    assert config("core.packedGitLimit") == []
    assert config("core.packedGitWindowSize") == []

    # Settings as they must be: the next run leaves the file alone (every write is fsynced
    # to the drive, and this runs hourly).
    before = (mirror / "config").stat()
    (cloud_data.files("docs") / "a.txt").write_text("three\n")
    head = cloud_data.commit("docs")
    assert appliance.json("mirror")["outcome"] == "ok"
    assert git("--git-dir", str(mirror), "rev-parse", "main").stdout.strip() == head
    after = (mirror / "config").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_history_rewrite_on_the_cloud_is_refused_and_alerted(
    appliance: Appliance, cloud_data: CloudData, fake_cloud: FakeCloud, tmp_path: Path
) -> None:
    folder = cloud_data.files("docs")
    (folder / "a.txt").write_text("first\n")
    first = cloud_data.commit("docs")
    (folder / "a.txt").write_text("second\n")
    second = cloud_data.commit("docs")
    drive = tmp_path / "drive"
    setup(appliance, fake_cloud, drive)
    assert appliance.json("mirror")["outcome"] == "ok"

    # The cloud (broken or compromised) replaces history: main now starts from a new root.
    server = str(cloud_data.repo_path("docs"))
    tree = git("--git-dir", server, "rev-parse", f"{second}^{{tree}}").stdout.strip()
    forged = git("--git-dir", server, "commit-tree", tree, "-m", "nothing to see").stdout.strip()
    git("--git-dir", server, "update-ref", "refs/heads/main", forged)

    proc = appliance("mirror", check=False)

    assert proc.returncode == 1
    error = proc.stderr.strip()
    assert len(error.splitlines()) == 1, error
    assert "rewrote history" in error and "refused" in error, error
    mirror = mirror_of(drive, "docs")
    assert git("--git-dir", str(mirror), "rev-parse", "main").stdout.strip() == second
    assert git("--git-dir", str(mirror), "cat-file", "-e", first).returncode == 0
    fsck(mirror)
    status = appliance.json("status")
    alerts = [a for a in status["alerts"] if a["kind"] == "rewrite"]
    assert len(alerts) == 1, status["alerts"]
    assert alerts[0]["subject"] == f"{USER}/docs"
    assert forged[:12] in alerts[0]["message"] and second[:12] in alerts[0]["message"]
    assert "rewrite" in "\n".join(appliance("status").stdout.splitlines())

    # Refused again an hour later: the same alert counts up, no second one.
    assert appliance("mirror", check=False).returncode == 1
    alerts = [a for a in appliance.json("alerts")["alerts"] if a["kind"] == "rewrite"]
    assert len(alerts) == 1 and alerts[0]["count"] == 2
    assert git("--git-dir", str(mirror), "rev-parse", "main").stdout.strip() == second


def test_packs_are_merged_as_they_pile_up_and_evidence_is_kept(
    appliance: Appliance, cloud_data: CloudData, fake_cloud: FakeCloud, tmp_path: Path
) -> None:
    folder = cloud_data.files("docs")
    (folder / "a.txt").write_text("0\n")
    heads = [cloud_data.commit("docs")]
    drive = tmp_path / "drive"
    setup(appliance, fake_cloud, drive)
    assert appliance.json("mirror")["outcome"] == "ok"
    mirror = mirror_of(drive, "docs")
    packs = mirror / "objects" / "pack"

    # A refused rewrite leaves its objects in a pack of their own: evidence to keep.
    server = str(cloud_data.repo_path("docs"))
    tree = git("--git-dir", server, "rev-parse", f"{heads[0]}^{{tree}}").stdout.strip()
    forged = git("--git-dir", server, "commit-tree", tree, "-m", "forged").stdout.strip()
    git("--git-dir", server, "update-ref", "refs/heads/main", forged)
    assert appliance("mirror", check=False).returncode == 1
    assert git("--git-dir", str(mirror), "cat-file", "-e", forged).returncode == 0
    git("--git-dir", server, "update-ref", "refs/heads/main", heads[0])

    # One pack per fetch, until there are more than MAX_PACKS: then they are merged, in the
    # same job, so no job leaves more than MAX_PACKS behind.
    counts, merged = [], []
    for i in range(1, MAX_PACKS + 3):
        (folder / "a.txt").write_text(f"{i}\n")
        heads.append(cloud_data.commit("docs"))
        result = appliance.json("mirror")
        assert result["outcome"] == "ok", result
        counts.append(len(list(packs.glob("*.pack"))))
        merged.append("packs merged" in result["segments"][0]["message"])
    assert MAX_PACKS in counts and max(counts) == MAX_PACKS, counts
    first = merged.index(True)
    assert counts[first - 1] == MAX_PACKS and counts[first] < MAX_PACKS, (counts, merged)
    assert counts[-1] < MAX_PACKS, counts

    # Every snapshot, and the refused commit, is still there; the repository is sound.
    assert git("--git-dir", str(mirror), "rev-parse", "main").stdout.strip() == heads[-1]
    listed = git("--git-dir", str(mirror), "rev-list", "main").stdout.split()
    assert set(heads) <= set(listed)
    assert git("--git-dir", str(mirror), "cat-file", "-e", forged).returncode == 0
    assert not list(packs.glob(".tmp-*"))
    fsck(mirror)


def test_objects_that_fail_checks_are_refused(
    appliance: Appliance, cloud_data: CloudData, fake_cloud: FakeCloud, tmp_path: Path
) -> None:
    (cloud_data.files("docs") / "a.txt").write_text("ok\n")
    good = cloud_data.commit("docs")
    drive = tmp_path / "drive"
    setup(appliance, fake_cloud, drive)
    assert appliance.json("mirror")["outcome"] == "ok"

    # A commit whose tree holds ".GIT": what git's fsck calls hasDotgit (a checkout of it
    # would write into a repository's own configuration).
    server = str(cloud_data.repo_path("docs"))
    blob = git("--git-dir", server, "hash-object", "-w", "--stdin").stdout.strip()
    tree = subprocess_input(["git", "--git-dir", server, "mktree"], f"100644 blob {blob}\t.GIT\n")
    bad = git("--git-dir", server, "commit-tree", tree, "-p", good, "-m", "evil").stdout.strip()
    git("--git-dir", server, "update-ref", "refs/heads/main", bad)

    result = appliance.json("mirror")
    assert result["outcome"] == "failed"
    assert "fail git's checks" in result["message"], result
    mirror = mirror_of(drive, "docs")
    assert git("--git-dir", str(mirror), "rev-parse", "main").stdout.strip() == good
    assert git("--git-dir", str(mirror), "cat-file", "-e", bad, check=False).returncode != 0
    assert [a["kind"] for a in appliance.json("alerts")["alerts"]] == ["bad-objects"]


def subprocess_input(argv: list[str], text: str) -> str:
    import subprocess

    from tests.appliance.conftest import isolated_git_env

    out = subprocess.run(
        argv, input=text, capture_output=True, text=True, env=isolated_git_env(), check=True
    )
    return out.stdout.strip()


def test_restore_from_the_drive_and_plain_git_clone(
    appliance: Appliance, cloud_data: CloudData, fake_cloud: FakeCloud, tmp_path: Path
) -> None:
    folder = cloud_data.files("docs")
    (folder / "sub").mkdir()
    (folder / "sub" / "notes.txt").write_text("v1\n")
    (folder / "run.sh").write_text("#!/bin/sh\n")
    (folder / "run.sh").chmod(0o755)
    first = cloud_data.commit("docs")
    (folder / "sub" / "notes.txt").write_text("v2\n")
    cloud_data.commit("docs")
    drive = tmp_path / "drive"
    setup(appliance, fake_cloud, drive)
    assert appliance.json("mirror")["outcome"] == "ok"

    latest = tmp_path / "latest"
    done = appliance.json("restore", "docs", "--to", str(latest))
    assert done["files"] == 2
    assert not filecmp.dircmp(folder, latest).diff_files
    assert (latest / "sub" / "notes.txt").read_text() == "v2\n"
    assert stat.S_IMODE((latest / "run.sh").stat().st_mode) == 0o755

    old = tmp_path / "old"
    appliance("restore", "docs", "sub/notes.txt", "--at", first, "--to", str(old))
    assert (old / "notes.txt").read_text() == "v1\n"

    # What the README promises: plain git gets the files back without Bluegrass.
    clone = tmp_path / "clone"
    git("clone", "--quiet", str(mirror_of(drive, "docs")), str(clone))
    assert (clone / "files" / "sub" / "notes.txt").read_text() == "v2\n"

    inside = appliance("restore", "docs", "--to", str(drive / "bluegrass" / "x"), check=False)
    assert inside.returncode == 2 and "inside the drive" in inside.stderr


def test_wrong_credentials_are_reported_and_alerted(
    appliance: Appliance, cloud_data: CloudData, fake_cloud: FakeCloud, tmp_path: Path
) -> None:
    (cloud_data.files("docs") / "a.txt").write_text("x\n")
    cloud_data.commit("docs")
    setup(appliance, fake_cloud, tmp_path / "drive")
    fake_cloud.passwords[USER] = "revoked"

    result = appliance.json("mirror")

    assert result["outcome"] == "cloud-refused"
    assert "refused this device's credentials" in result["message"]
    assert [a["kind"] for a in appliance.json("alerts")["alerts"]] == ["cloud-refused"]


def test_what_an_interrupted_fetch_or_init_leaves_is_repaired(
    appliance: Appliance, cloud_data: CloudData, fake_cloud: FakeCloud, tmp_path: Path
) -> None:
    (cloud_data.files("docs") / "a.txt").write_text("one\n")
    cloud_data.commit("docs")
    (cloud_data.files("notes") / "n.txt").write_text("note\n")
    notes_head = cloud_data.commit("notes")
    (cloud_data.files("music") / "m.txt").write_text("tune\n")
    music_head = cloud_data.commit("music")
    drive = tmp_path / "drive"
    setup(appliance, fake_cloud, drive)
    assert appliance.json("mirror")["outcome"] == "ok"
    mirror = mirror_of(drive, "docs")
    # A fetch killed by a pulled cable: a stale ref lock and a half-written pack.
    (mirror / "refs" / "heads" / "main.lock").write_text("")
    (mirror / "objects" / "pack" / "tmp_pack_XyZ123").write_bytes(b"PACK\0\0\0\2 half")
    # A `git init` cut short: HEAD written, the rest lost with the journal.
    notes = mirror_of(drive, "notes")
    for path in notes.iterdir():
        if path.name != "HEAD":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    # Or: HEAD and config created but their content never reached the disk.
    music = mirror_of(drive, "music")
    (music / "HEAD").write_bytes(b"")
    (music / "config").write_bytes(b"\0" * 64)
    (cloud_data.files("docs") / "a.txt").write_text("two\n")
    docs_head = cloud_data.commit("docs")

    assert appliance.json("mirror")["outcome"] == "ok"

    assert git("--git-dir", str(mirror), "rev-parse", "main").stdout.strip() == docs_head
    assert git("--git-dir", str(notes), "rev-parse", "main").stdout.strip() == notes_head
    assert git("--git-dir", str(music), "rev-parse", "main").stdout.strip() == music_head
    assert git("--git-dir", str(music), "config", "transfer.fsckObjects").stdout.strip() == "true"
    fsck(music)
    assert not (mirror / "refs" / "heads" / "main.lock").exists()
    assert not list((mirror / "objects" / "pack").glob("tmp_*"))
    fsck(mirror)
    fsck(notes)


def test_a_cloud_data_root_on_this_machine_is_mirrored_without_enrollment(
    appliance: Appliance, cloud_data: CloudData, tmp_path: Path
) -> None:
    # The embedded setup: cloud.url = "file:///DATA", every user found there.
    (cloud_data.files("docs") / "a.txt").write_text("alice's\n")
    alice = cloud_data.commit("docs")
    (cloud_data.files("music", user="bob") / "song.txt").write_text("la la\n")
    bob = cloud_data.commit("music", user="bob")
    appliance.configure(f'[cloud]\nurl = "file://{cloud_data.root}"\n')
    drive = tmp_path / "drive"
    appliance.global_args = ["--drive-dir", str(drive)]

    assert appliance.json("mirror")["outcome"] == "ok"
    assert appliance.json("files")["outcome"] == "ok"

    assert (
        git("--git-dir", str(mirror_of(drive, "docs")), "rev-parse", "main").stdout.strip() == alice
    )
    bob_mirror = drive / "bluegrass" / "bob" / "music.git"
    assert git("--git-dir", str(bob_mirror), "rev-parse", "main").stdout.strip() == bob
    assert (drive / "bluegrass" / "bob" / "music" / "song.txt").read_text() == "la la\n"
    restored = tmp_path / "restored"
    appliance("restore", "music", "--user", "bob", "--to", str(restored))
    assert (restored / "song.txt").read_text() == "la la\n"


@pytest.mark.slow
def test_mirroring_a_big_file_stays_within_a_small_pis_memory(
    appliance: Appliance, cloud_data: CloudData, fake_cloud: FakeCloud, tmp_path: Path
) -> None:
    # 96 MB in one blob: without core.bigFileThreshold on the mirror, index-pack holds the
    # whole object (git's default threshold is 512 MB), so the tree's peak would pass 96 MB.
    write_random(cloud_data.files("video") / "film.bin", 96 * 2**20)
    head = cloud_data.commit("video")
    drive = tmp_path / "drive"
    setup(appliance, fake_cloud, drive)
    # RUSAGE_CHILDREN of a wrapper process: the largest process of the command's own tree
    # (the appliance's Python and every git it ran), not the test's server side.
    wrapper = (
        "import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            wrapper,
            str(VENV_BIN / "bluegrass-appliance"),
            "--state",
            str(appliance.state),
            "--drive-dir",
            str(drive),
            "mirror",
        ],
        capture_output=True,
        text=True,
        env=appliance.env(),
        check=True,
    )
    peak_mb = int(proc.stdout.strip().splitlines()[-1]) / 1024
    assert peak_mb < 64, f"peak RSS {peak_mb:.0f} MB"
    assert (
        git("--git-dir", str(mirror_of(drive, "video")), "rev-parse", "main").stdout.strip() == head
    )


def test_a_damaged_cloud_copy_is_alerted_and_the_drive_copy_kept(
    appliance: Appliance, cloud_data: CloudData, fake_cloud: FakeCloud, tmp_path: Path
) -> None:
    """Issue 16 part 6 (a drill): a byte flipped in the cloud's pack made the mirror fail with
    no alert, and no new snapshot was taken from then on without anyone being told."""
    folder = cloud_data.files("docs")
    (folder / "a.txt").write_text("first\n")
    good = cloud_data.commit("docs")
    drive = tmp_path / "drive"
    setup(appliance, fake_cloud, drive)
    assert appliance.json("mirror")["outcome"] == "ok"
    write_random(folder / "photo.bin", 300_000)
    cloud_data.commit("docs")
    server = cloud_data.repo_path("docs")
    git("--git-dir", str(server), "repack", "-adq")
    flip_in_pack(server)

    proc = appliance("mirror", check=False)

    assert proc.returncode == 1
    mirror = mirror_of(drive, "docs")
    assert git("--git-dir", str(mirror), "rev-parse", "main").stdout.strip() == good
    fsck(mirror)
    alerts = appliance.json("alerts")["alerts"]
    assert [a["kind"] for a in alerts] == ["cloud-damaged"], alerts
    assert alerts[0]["subject"] == f"{USER}/docs"
    message = alerts[0]["message"]
    assert f"{USER}/docs" in message and "damaged" in message and "kept" in message, message
    (result,) = [s for s in appliance.json("status")["segments"] if s["segment"] == "docs"]
    assert not result["ok"] and "damaged" in result["message"]
    # The Pi's dashboard: an error on the segment's card.
    paths = pi_settings.Paths(appliance.state)
    backend = PiBackend(PiContext(paths, pi_settings.load(paths), str(drive)))
    backend.complete_setup("admin", "a long enough password", None)
    admin = backend.account("admin")
    assert admin is not None
    (docs,) = [s for s in backend.dashboard(admin).segments if s.segment == "docs"]
    errors = [p.text for p in docs.problems if p.severity == Severity.ERROR]
    assert any("damaged" in t and "kept" in t for t in errors), docs.problems


def test_a_damaged_loose_object_on_the_cloud_is_alerted_too(
    appliance: Appliance, cloud_data: CloudData, fake_cloud: FakeCloud, tmp_path: Path
) -> None:
    """A loose object is inflated by the cloud's upload-pack, which fails there: git's
    sideband brings its "remote: error: inflate: ..." to the Pi."""
    folder = cloud_data.files("docs")
    (folder / "a.txt").write_text("first\n")
    good = cloud_data.commit("docs")
    drive = tmp_path / "drive"
    setup(appliance, fake_cloud, drive)
    assert appliance.json("mirror")["outcome"] == "ok"
    write_random(folder / "photo.bin", 100_000)
    cloud_data.commit("docs")
    oid = git("hash-object", str(folder / "photo.bin")).stdout.strip()
    loose = cloud_data.repo_path("docs") / "objects" / oid[:2] / oid[2:]
    flip(loose, loose.stat().st_size // 2)

    assert appliance("mirror", check=False).returncode == 1

    assert (
        git("--git-dir", str(mirror_of(drive, "docs")), "rev-parse", "main").stdout.strip() == good
    )
    alerts = appliance.json("alerts")["alerts"]
    assert [a["kind"] for a in alerts] == ["cloud-damaged"], alerts
