"""A replicate killed (with its rclone) at chosen and at random moments, against a real S3
server (`rclone serve s3` on loopback): no kill leaves a state that `replica check` or
`rebuild` takes for complete when it is not, and the next replicate finishes the job without
sending again what had arrived.

The chosen moments are found by watching, not by waiting: the local record of a bundle made
but not sent, and the first finished object in the user's area of the bucket (a bundle and
its refs file go up together, before the manifest, so that is the window between them).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import VENV_BIN
from tests.support.replica import SEGMENT, USER, ReplicaSite, as_json, replica_site, runner
from tests.support.s3 import S3Server

SEED = 20261207
TEMP = ".rclone_temp_put_"  # rclone serve s3 writes an object here first, then renames it


@dataclass
class Site(ReplicaSite):
    rounds: int = 0

    def prefix(self) -> Path:
        keys = json.loads((self.data / "replica" / "keys" / f"{USER}.json").read_text())
        return self.s3.bucket_dir / keys["prefix"]

    def change_and_commit(self, size: int) -> str:
        """One more day of history: a new file of `size` random bytes and an edited one."""
        self.rounds += 1
        (self.live / f"day-{self.rounds:02d}.bin").write_bytes(os.urandom(size))
        (self.live / "diary.txt").write_text(f"day {self.rounds}\n")
        out = as_json(self.cloud("commit", "--json"))
        return str(out["segments"][0]["commit"])

    def head(self) -> str:
        log = as_json(self.cloud("log", USER, SEGMENT, "--json"))["snapshots"]
        return str(log[0]["commit"])


def finished_objects(area: Path) -> dict[str, tuple[int, int, int]]:
    """{raw name: (size, inode, mtime)} of the objects complete in the area."""
    if not area.is_dir():
        return {}
    return {
        p.relative_to(area).as_posix(): (p.stat().st_size, p.stat().st_ino, p.stat().st_mtime_ns)
        for p in area.rglob("*")
        if p.is_file() and not p.name.startswith(TEMP)
    }


def all_objects(s3: S3Server) -> dict[str, tuple[int, int, int]]:
    return finished_objects(s3.bucket_dir)


def replicate_killed_when(site: Site, ready: Callable[[], bool], timeout: float = 120) -> bool:
    """Start `replicate`, kill it and its rclone (the whole process group, as a crash or a
    service stop does) as soon as `ready()` holds; return False if it finished first."""
    proc = subprocess.Popen(
        [str(VENV_BIN / "bluegrass-cloud"), "--data", str(site.data), "replicate", "--json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None:
            if ready():
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return True
            if time.monotonic() > deadline:
                raise AssertionError("replicate neither finished nor reached the moment")
            time.sleep(0.005)  # polling interval: ready() decides, not the clock
        return False
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def reached(moment: float) -> Callable[[], bool]:
    return lambda: time.monotonic() >= moment


def assert_nothing_taken_for_complete_wrongly(site: Site) -> dict:
    """`replica check` downloads what the newest complete manifests name and replays it:
    after any kill, either there is none yet or what there is checks out."""
    out = as_json(site.cloud("replica", "check", "--json", check=False))
    for area in out["areas"]:
        assert area["problems"] in ([], ["no complete manifest in the bucket"]), area
    return {a["area"]: a for a in out["areas"]}


def rebuilt_head(site: Site, name: str) -> str | None:
    """Rebuild a fresh data root from the bucket (configuration and admin secret only)."""
    fresh = site.base / name
    (fresh / "replica").mkdir(parents=True, mode=0o700)
    shutil.copy(site.data / "bluegrass-cloud.toml", fresh)
    shutil.copy(site.data / "replica" / "admin.json", fresh / "replica")
    out = as_json(runner(fresh)("rebuild", "--from-replica", "--json"))
    heads = [s["head"] for s in out["segments"] if (s["user"], s["segment"]) == (USER, SEGMENT)]
    return heads[0] if heads else None


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with replica_site(tmp_path, Site) as site:
        yield site


def test_a_kill_between_bundle_and_manifest_is_not_complete_and_is_resumed(site: Site) -> None:
    site.change_and_commit(1 << 20)
    site.cloud("replicate")
    complete_head = site.head()
    new_head = site.change_and_commit(24 << 20)  # a bundle that takes a while to send
    area = site.prefix()
    before = finished_objects(area)

    assert replicate_killed_when(site, lambda: len(finished_objects(area)) > len(before))
    # One of the two arrived (the small refs file, mostly); no manifest names it: neither
    # check nor rebuild take it as done.
    arrived = all_objects(site.s3)
    assert len(finished_objects(area)) == len(before) + 1
    checked = assert_nothing_taken_for_complete_wrongly(site)
    assert checked[USER]["manifest"] == "manifests/000001.json"
    assert rebuilt_head(site, "rebuilt-after-kill") == complete_head

    out = as_json(site.cloud("replicate", "--json"))
    areas = {a["area"]: a for a in out["areas"]}
    now = all_objects(site.s3)
    # Nothing that had arrived was sent again (same inode and time: not rewritten) ...
    assert {k: now[k] for k in arrived} == arrived
    # ... the bundle was not made again, only the object still missing and the manifest
    # went up for alice ...
    assert areas[USER]["new_bundles"] == []
    assert areas[USER]["uploaded"] == 2
    assert areas[USER]["manifest"] == "manifests/000002.json"
    # ... and every object this run counted is a new one in the bucket.
    assert sum(a["uploaded"] for a in out["areas"]) == len(set(now) - set(arrived))
    assert rebuilt_head(site, "rebuilt-after-resume") == new_head


def test_a_kill_after_the_bundle_is_recorded_but_not_sent(site: Site) -> None:
    site.change_and_commit(1 << 20)
    state = site.data / "replica" / "state" / f"{USER}.json"

    def recorded() -> bool:
        try:
            return bool(json.loads(state.read_text()).get("pending"))
        except (OSError, ValueError):
            return False

    assert replicate_killed_when(site, recorded)
    assert_nothing_taken_for_complete_wrongly(site)
    out = as_json(site.cloud("replicate", "--json"))
    alice = next(a for a in out["areas"] if a["area"] == USER)
    # The recorded bundle is the one sent: numbered 1, not made a second time.
    assert alice["new_bundles"] == [] and alice["manifest"] == "manifests/000001.json"
    assert assert_nothing_taken_for_complete_wrongly(site)[USER]["problems"] == []


def test_kills_at_random_moments_never_leave_a_false_complete_state(site: Site) -> None:
    rng = random.Random(SEED)
    site.change_and_commit(4 << 20)
    started = time.monotonic()
    site.cloud("replicate")
    full_run = time.monotonic() - started
    heads = [site.head()]
    kills = 0
    for _ in range(5):
        heads.append(site.change_and_commit(rng.choice([1 << 10, 1 << 20, 6 << 20])))
        moment = time.monotonic() + rng.uniform(0.05, 0.7 * full_run)
        kills += replicate_killed_when(site, reached(moment))
        checked = assert_nothing_taken_for_complete_wrongly(site)
        assert checked[USER]["manifest"] is not None  # the first complete one stays
    assert kills >= 3  # most moments fell inside a run, not after it
    arrived = all_objects(site.s3)
    out = as_json(site.cloud("replicate", "--json"))
    now = all_objects(site.s3)
    assert out["errors"] == []
    assert {k: now[k] for k in arrived} == arrived
    assert sum(a["uploaded"] for a in out["areas"]) == len(set(now) - set(arrived))
    assert assert_nothing_taken_for_complete_wrongly(site)[USER]["problems"] == []
    assert rebuilt_head(site, "rebuilt") == heads[-1]


def test_a_segment_that_fails_midway_keeps_what_went_up_for_the_next_run(site: Site) -> None:
    """Bundles are sent while the next ones are made: when one segment's bundle cannot be
    made, what was sent meanwhile is recorded, no manifest goes up, and once the segment is
    repaired the next run sends only what is missing."""
    (site.live / "report.bin").write_bytes(os.urandom(4 << 20))
    photos = site.data / "files" / USER / "photos"
    photos.mkdir()
    (photos / "beach.jpg").write_bytes(os.urandom(1 << 20))
    broken = site.data / "files" / USER / "zz-broken"  # named last: its bundle is made last
    broken.mkdir()
    (broken / "notes.txt").write_text("a note\n")
    site.cloud("commit")
    repo = site.data / "repos" / USER / "zz-broken.git"
    blob = subprocess.run(
        ["git", "--git-dir", str(repo), "rev-parse", "main:files/notes.txt"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    loose = repo / "objects" / blob[:2] / blob[2:]
    saved = loose.read_bytes()
    loose.unlink()  # the blob is gone: git cannot make this segment's bundle

    proc = site.cloud("replicate", "--json", check=False)
    assert proc.returncode == 1
    failed = as_json(proc)
    assert [e["area"] for e in failed["errors"]] == [USER]
    assert "zz-broken" in failed["errors"][0]["error"]
    checked = assert_nothing_taken_for_complete_wrongly(site)
    assert checked[USER]["manifest"] is None
    pending = json.loads((site.data / "replica" / "state" / f"{USER}.json").read_text())
    assert sorted(b["key"] for b in pending["pending"]) == [
        f"{SEGMENT}/000001-full.bundle",
        "photos/000001-full.bundle",
    ]
    arrived = all_objects(site.s3)

    loose.parent.mkdir(exist_ok=True)
    loose.write_bytes(saved)
    out = as_json(site.cloud("replicate", "--json"))
    now = all_objects(site.s3)
    alice = next(a for a in out["areas"] if a["area"] == USER)
    assert {k: now[k] for k in arrived} == arrived  # nothing that went up is sent again
    assert alice["new_bundles"] == ["zz-broken/000001-full.bundle"]
    assert alice["manifest"] == "manifests/000001.json"
    assert sum(a["uploaded"] for a in out["areas"]) == len(set(now) - set(arrived))
    assert assert_nothing_taken_for_complete_wrongly(site)[USER]["problems"] == []
