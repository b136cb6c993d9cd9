"""End to end: two laptops keep one segment in sync through the real cloud, and its history.

One story, told in order by the first six tests (they share the module-scoped cloud and laptops
of conftest.py, and `Story`, what each step hands on to the later ones):

1. edits on either laptop reach the other through the cloud;
2. a file edited on both laptops between syncs keeps both versions, on both laptops;
3. deletes and renames (of a file and of a folder) propagate;
4. deleting most of the segment on laptop A stops the sync: nothing is deleted anywhere;
5. `kill -9` of a sync uploading a large file, with a commit while its partial upload is on
   the cloud: the partial is not recorded, the next sync recovers without a resync, the file
   arrives complete, and the next commit records it;
6. the history holds every version, and restoring an older commit gives back exactly what
   laptop A had then.

After each step the cloud commits the segment and the test remembers laptop A's folder (every
path, and a SHA-256 of every file's bytes) with the commit id. Modes and times are compared in
test_exact.py. Each step starts by checking that both laptops and
the cloud agree, so a failure names the first step that went wrong.

Two more tests, each on a segment of its own, take two promises of the story to their edges:
a conflict made within seconds of a sync, and a mass delete in a segment of many folders.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
from bluegrass.laptop.bisync import SENTINEL_MTIME

from tests.e2e.conftest import SEGMENT, USER, Cloud, Laptops
from tests.laptop.conftest import Laptop, kill_tree, wait_until

pytestmark = pytest.mark.slow

CHECK = ".bluegrass-check"
SIDECARS = ".bluegrass-meta"
CONFIRM = f"bluegrass sync {SEGMENT} --confirm-deletes"
BIG_SIZE = 200 * 1024 * 1024
CHUNK = 8 * 1024 * 1024
# rclone's name for an upload in progress: NAME.<8 hex digits>.bluegrass-part
BIG_PARTIAL = re.compile(r"big\.bin\.[0-9a-f]{8}\.bluegrass-part")

Tree = dict[str, str | None]  # relative path -> SHA-256 of the file's bytes; None for a folder


def tree(root: Path) -> Tree:
    """Every path under root: folders as None, files as the SHA-256 of their bytes. Not the
    devices' metadata sidecars, which only the cloud's folder holds."""
    found: Tree = {}
    for path in sorted(root.rglob("*")):
        if path.relative_to(root).parts[0] == SIDECARS:
            continue
        assert not path.is_symlink(), f"unexpected symlink {path}"
        found[path.relative_to(root).as_posix()] = None if path.is_dir() else sha256(path)
    return found


# SHA-256 by (device, inode, size, mtime, ctime): the big file is read once per copy of it.
_DIGESTS: dict[tuple[int, ...], str] = {}


def _identity(path: Path) -> tuple[int, ...]:
    st = path.stat()
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def sha256(path: Path) -> str:
    key = _identity(path)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while block := f.read(CHUNK):
                digest.update(block)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def text_sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def texts(root: Path) -> dict[str, str]:
    """The files directly in root (but the check file) with their text."""
    return {
        p.name: p.read_text() for p in sorted(root.iterdir()) if p.is_file() and p.name != CHECK
    }


def aged(path: Path, seconds_ago: float) -> None:
    when = time.time() - seconds_ago
    os.utime(path, (when, when))


def sync(laptop: Laptop, *args: str) -> dict:
    """`bluegrass sync [ARGS] --json`, which must end ok; the one segment's result."""
    proc = laptop.run("sync", *args, "--json")
    [result] = json.loads(proc.stdout)["segments"]
    assert result["outcome"] == "ok", result
    return result


def partials(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if BIG_PARTIAL.fullmatch(p.name)]


def gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@dataclass
class Story:
    """What the steps hand on: the commits taken, and laptop A's tree at each of them."""

    commits: dict[str, str] = field(default_factory=dict)  # step -> commit id
    trees: dict[str, Tree] = field(default_factory=dict)  # step -> laptop A's tree then
    order: list[str] = field(default_factory=list)  # the steps, in the order they committed
    big_sha: str = ""

    def head(self) -> str:
        return self.commits[self.order[-1]]


@pytest.fixture(scope="module")
def story() -> Story:
    return Story()


def agreed(cloud: Cloud, laptops: Laptops, when: str) -> Tree:
    """Both laptops and the cloud hold the same tree (`when` says where we are); that tree."""
    a_tree = tree(laptops.docs_a)
    assert tree(laptops.docs_b) == a_tree, f"{when}: laptops A and B differ"
    assert tree(cloud.tree) == a_tree, f"{when}: laptop A and the cloud differ"
    return a_tree


def commit_step(cloud: Cloud, laptops: Laptops, story: Story, step: str) -> dict:
    """Commit the segment now and remember laptop A's tree with it."""
    a_tree = tree(laptops.docs_a)
    assert tree(cloud.tree) == a_tree, f"committing {step!r}: laptop A and the cloud differ"
    result = cloud.commit()
    assert result["committed"], f"{step}: nothing new to commit: {result}"
    assert result["skipped"] == [] and result["unreadable"] == [], result
    story.commits[step] = result["commit"]
    story.trees[step] = a_tree
    story.order.append(step)
    return result


# -- 1 ------------------------------------------------------------------------------------


def test_edits_on_either_laptop_reach_the_other_through_the_cloud(
    cloud: Cloud, laptops: Laptops, story: Story
):
    a, b, da, db = laptops.a, laptops.b, laptops.docs_a, laptops.docs_b
    (da / "notes.txt").write_text("first draft\n")
    (da / "report.txt").write_text("the report, as agreed\n")
    (da / "old-name.txt").write_text("a file to be renamed\n")
    (da / "doomed.txt").write_text("a file to be deleted\n")
    (da / "sub" / "deeper").mkdir(parents=True)
    (da / "sub" / "deeper" / "data.bin").write_bytes(bytes(range(256)) * 64)
    (da / "photos-2025").mkdir()
    (da / "photos-2025" / "beach.jpg").write_bytes(os.urandom(4096))
    (da / "bulk").mkdir()
    for i in range(14):
        (da / "bulk" / f"f{i:02}.txt").write_text(f"bulk file {i}\n")

    first = sync(a)
    assert first["resync"] is True  # the first sync of a segment copies both ways
    assert first["files_transferred"] == 20  # the check file was put on the cloud before
    sync(b)  # B joins: its empty folder is filled from the cloud
    assert (db / CHECK).is_file()
    commit_step(cloud, laptops, story, "start")

    # A edits; B has the edit once A, then B, have synced.
    (da / "notes.txt").write_text("second draft, by A\n")
    assert sync(a)["files_transferred"] == 1
    commit_step(cloud, laptops, story, "A's edit")
    sync(b)
    assert (db / "notes.txt").read_text() == "second draft, by A\n", "B did not get A's edit"

    # The reverse: B changes a file and adds one; A has both once B, then A, have synced.
    (db / "sub" / "deeper" / "data.bin").write_bytes(b"B rewrote this")
    (db / "from-b.txt").write_text("B was here\n")
    assert sync(b)["files_transferred"] == 2
    sync(a)
    assert (da / "sub" / "deeper" / "data.bin").read_bytes() == b"B rewrote this", (
        "A did not get B's edit"
    )
    assert (da / "from-b.txt").read_text() == "B was here\n"
    commit_step(cloud, laptops, story, "B's edit")


# -- 2 ------------------------------------------------------------------------------------


def test_a_file_edited_on_both_laptops_keeps_both_versions(
    cloud: Cloud, laptops: Laptops, story: Story
):
    a, b, da, db = laptops.a, laptops.b, laptops.docs_a, laptops.docs_b
    agreed(cloud, laptops, "before the conflict")
    (da / "report.txt").write_text("A's version of the report, written first\n")
    aged(da / "report.txt", 600)
    (db / "report.txt").write_text("B's version of the report, written later\n")
    aged(db / "report.txt", 60)

    sync(a)  # A's version reaches the cloud first
    result = sync(b)  # B finds the report changed on both sides
    assert result["conflict_files"] == ["report.conflict1.txt"], result
    sync(a)
    for folder in (da, db, cloud.tree):
        # The newer version keeps the name; the other is kept beside it.
        assert texts(folder)["report.txt"] == "B's version of the report, written later\n"
        assert texts(folder)["report.conflict1.txt"] == (
            "A's version of the report, written first\n"
        )
    commit_step(cloud, laptops, story, "conflict")


# -- 3 ------------------------------------------------------------------------------------


def test_deletes_and_renames_propagate(cloud: Cloud, laptops: Laptops, story: Story):
    a, b, da, db = laptops.a, laptops.b, laptops.docs_a, laptops.docs_b
    agreed(cloud, laptops, "before deleting and renaming")
    # A deletes a file and renames another; B renames a folder.
    (da / "doomed.txt").unlink()
    (da / "old-name.txt").rename(da / "new-name.txt")
    (db / "photos-2025").rename(db / "photos")
    sync(a)
    sync(b)
    sync(a)
    for folder in (da, db, cloud.tree):
        assert not (folder / "doomed.txt").exists(), folder
        assert not (folder / "old-name.txt").exists(), folder
        assert (folder / "new-name.txt").read_text() == "a file to be renamed\n"
        assert not (folder / "photos-2025").exists(), folder
        assert (folder / "photos" / "beach.jpg").is_file(), folder
    result = commit_step(cloud, laptops, story, "deletes and renames")
    assert (result["added"], result["deleted"]) == (2, 3), result  # a rename is both


# -- 4 ------------------------------------------------------------------------------------


def test_a_mass_delete_is_stopped_and_nothing_is_deleted(
    cloud: Cloud, laptops: Laptops, story: Story
):
    a, b, da, db = laptops.a, laptops.b, laptops.docs_a, laptops.docs_b
    before = agreed(cloud, laptops, "before the mass delete")
    bulk = sorted((da / "bulk").iterdir())
    files = [path for path, digest in before.items() if digest is not None]
    assert len(bulk) * 2 > len(files), "the test must delete more than half of the files"
    for path in bulk:
        path.unlink()

    proc = a.run("sync", check=False)
    assert proc.returncode == 3, proc.stdout + proc.stderr  # needs you
    assert f"stopped before deleting {len(bulk)} of " in proc.stderr
    assert CONFIRM in proc.stderr
    seg = a.segment_status(SEGMENT)
    assert seg["needs_attention"] is True
    assert seg["last_run"]["outcome"] == "needs-user"
    assert seg["last_run"]["command"] == CONFIRM
    assert seg["last_run"]["deletes"] == 0

    # Nothing was deleted on the cloud, nor on B, which syncs as usual.
    assert tree(cloud.tree) == before
    assert sync(b)["deletes"] == 0
    assert tree(db) == before
    unchanged = cloud.commit()
    assert unchanged["committed"] is False and unchanged["commit"] == story.head(), unchanged

    # A brings the files back as status offers (--resync copies both ways, deletes nothing).
    sync(a, SEGMENT, "--resync")
    assert tree(da) == before
    assert a.segment_status(SEGMENT)["needs_attention"] is False


# -- 5 ------------------------------------------------------------------------------------


def test_a_killed_upload_is_not_committed_and_the_next_sync_recovers(
    cloud: Cloud, laptops: Laptops, story: Story
):
    a, b, da, db = laptops.a, laptops.b, laptops.docs_a, laptops.docs_b
    agreed(cloud, laptops, "before the big file")
    big = da / "big.bin"
    digest = hashlib.sha256()
    with big.open("wb") as f:
        for _ in range(BIG_SIZE // CHUNK):
            chunk = os.urandom(CHUNK)
            digest.update(chunk)
            f.write(chunk)
    story.big_sha = _DIGESTS[_identity(big)] = digest.hexdigest()
    # A slow link keeps the upload in flight while the cloud commits (it would take 50 s).
    a.set_sync_option("bandwidth_limit", "4M")

    proc = a.popen("sync", SEGMENT)

    def uploading() -> list[Path]:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the sync ended before its upload was seen: {out}{err}")
        return partials(cloud.tree)

    [partial] = wait_until(uploading, timeout=60, what="big.bin's partial upload on the cloud")
    children = psutil.Process(proc.pid).children(recursive=True)
    try:
        [rclone] = [c for c in children if c.name() == "rclone"]
        assert "bisync" in rclone.cmdline(), rclone.cmdline()
        size_before = partial.stat().st_size
        during = cloud.commit()
        assert partial.stat().st_size > size_before, "the upload was not going on meanwhile"
        # The half-uploaded file is reported and left out; nothing else changed.
        assert during["skipped"] == [{"path": partial.name, "reason": "upload in progress"}]
        assert during["committed"] is False and during["commit"] == story.head(), during
    finally:  # a power cut: rclone and bluegrass die at once
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        kill_tree(proc, None)
    wait_until(lambda: all(gone(c) for c in children), 10, "rclone to be gone")
    assert any(a.workdir(SEGMENT).glob("*.lck")), "rclone's lock should be left behind"
    assert not (cloud.tree / "big.bin").exists()
    assert partials(cloud.tree) == [partial]

    # The next sync, at full speed, recovers by itself: no resync, nothing to do by hand.
    a.set_sync_option("bandwidth_limit", "")
    result = sync(a, SEGMENT)
    assert any("removed the lock left by an interrupted sync" in n for n in result["notes"])
    assert result["resync"] is False
    assert not any(a.workdir(SEGMENT).glob("*.lck"))
    assert sha256(cloud.tree / "big.bin") == story.big_sha
    assert partials(cloud.tree) == [] and partials(da) == []

    sync(b)  # and B gets it, whole
    assert sha256(db / "big.bin") == story.big_sha

    after = commit_step(cloud, laptops, story, "big file")
    assert (after["added"], after["changed"], after["deleted"]) == (1, 0, 0), after
    assert after["bytes_added"] == BIG_SIZE


# -- 6 ------------------------------------------------------------------------------------


def test_history_holds_every_version_and_restores_byte_exact(
    cloud: Cloud, e2e_tmp: Path, story: Story
):
    steps = ["start", "A's edit", "B's edit", "conflict", "deletes and renames", "big file"]
    trees = story.trees
    log = cloud.log()
    # Newest first: the commits the steps took, then the empty one from before `run` started.
    assert [s["commit"] for s in log] == [story.commits[s] for s in reversed(story.order)] + [
        log[-1]["commit"]
    ]
    assert log[-1]["files"] == 0

    # A restore of each commit the steps took is exactly what laptop A had then (the big file
    # is compared on its own, below).
    (e2e_tmp / "restored").mkdir()
    for n, step in enumerate(story.order):
        if step == "big file":
            continue
        target = e2e_tmp / "restored" / f"step-{n}"
        assert cloud.restore(target, at=story.commits[step])["commit"] == story.commits[step]
        # The check file is the sync's, not the user's: snapshots leave it out.
        assert tree(target) == {k: v for k, v in trees[step].items() if k != CHECK}, step
    if "big file" in story.commits:
        target = e2e_tmp / "restored" / "big"
        cloud.restore(target, at=story.commits["big file"], path="big.bin")
        assert sha256(target / "big.bin") == story.big_sha

    # Every step got to its commit, and the versions that matter are in them: the first
    # draft and A's edit of it, both sides of the conflict, the files later deleted.
    assert story.order == steps, "an earlier step did not get to its commit"
    assert trees["start"]["notes.txt"] == text_sha("first draft\n")
    assert trees["A's edit"]["notes.txt"] == text_sha("second draft, by A\n")
    assert trees["conflict"]["report.txt"] == text_sha("B's version of the report, written later\n")
    assert trees["conflict"]["report.conflict1.txt"] == text_sha(
        "A's version of the report, written first\n"
    )
    for deleted in ("doomed.txt", "old-name.txt", "photos-2025/beach.jpg"):
        assert deleted in trees["conflict"] and deleted not in trees["deletes and renames"]


# -- the edges ----------------------------------------------------------------------------


def own_segment(laptop: Laptop, name: str, folder: str) -> Path:
    path = laptop.folder(folder)
    laptop.run("segment", "add", name, str(path))
    return path


def test_edits_moments_apart_on_both_laptops_keep_both_versions(cloud: Cloud, laptops: Laptops):
    """Step 2 without the pause: B syncs an edit, and A syncs its own edit of the same file
    right after, within seconds of A's previous sync. Neither edit may be lost."""
    a, b = laptops.a, laptops.b
    fa, fb = own_segment(a, "plans", "Plans"), own_segment(b, "plans", "Sync/plans")
    (fa / "plan.txt").write_text("the plan\n")
    sync(a, "plans")
    sync(b, "plans")
    sync(a, "plans")  # A has just looked at the cloud
    # Every copy of the check file has the same time, so no laptop ever sees it changed
    # (with "now", B's copy made A see it changed, and A's next edit stopped the sync).
    checks = [fa / ".bluegrass-check", fb / ".bluegrass-check"]
    checks.append(cloud.data / "files" / USER / "plans" / ".bluegrass-check")
    assert {p.stat().st_mtime_ns for p in checks} == {SENTINEL_MTIME * 10**9}

    (fb / "plan.txt").write_text("B's plan, written first\n")
    aged(fb / "plan.txt", 60)
    sync(b, "plans")
    (fa / "plan.txt").write_text("A's plan, written later\n")
    sync(a, "plans")
    sync(b, "plans")
    both = {
        "plan.txt": "A's plan, written later\n",
        "plan.conflict1.txt": "B's plan, written first\n",
    }
    assert texts(fa) == both, "laptop A does not hold both versions"
    assert texts(cloud.data / "files" / USER / "plans") == both, "the cloud does not either"
    assert texts(fb) == both, "laptop B does not hold both versions"


def test_deleting_most_files_of_a_segment_of_many_folders_is_stopped(
    cloud: Cloud, laptops: Laptops
):
    """Step 4 in a segment where every file has a folder of its own (an album per photo)."""
    a = laptops.a
    albums = own_segment(a, "albums", "Albums")
    for i in range(10):
        (albums / f"album-{i}").mkdir()
        (albums / f"album-{i}" / "photo.jpg").write_text(f"photo {i}\n")
    sync(a, "albums")
    for i in range(8):  # 8 of the 10 photos, 8 of the 11 files with the check file
        (albums / f"album-{i}" / "photo.jpg").unlink()

    proc = a.run("sync", "albums", check=False)
    on_cloud = sorted((cloud.data / "files" / USER / "albums").glob("*/photo.jpg"))
    assert len(on_cloud) == 10, f"deleted on the cloud: {proc.stdout}"
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "bluegrass sync albums --confirm-deletes" in proc.stderr
