"""Issue 16 part 6, a drill finding: a flipped byte in a cloud repository was found only by a
manual `verify`; commits went on onto it and `maintain` said "maintained". Here the damage is
met and acted on: the job stops, says the repository is damaged, and says it everywhere."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from bluegrass.cloud.accounts import Accounts
from bluegrass.cloud.datadir import DataRoot
from bluegrass.cloud.panelbackend import CloudBackend

from tests.cloud.conftest import Run
from tests.cloud.server import Server
from tests.cloud.test_cli import make_user
from tests.cloud.test_drills import web_admin
from tests.support.damage import flip, flip_in_pack
from tests.support.net import free_port


def loose_blob(repo: Path, content: bytes) -> tuple[str, Path]:
    oid = (
        subprocess.run(
            ["git", "hash-object", "--stdin"], input=content, capture_output=True, check=True
        )
        .stdout.decode()
        .strip()
    )
    return oid, repo / "objects" / oid[:2] / oid[2:]


def damaged_segment(cloud: Run, data: Path) -> tuple[Path, Path, str]:
    """alice/docs with two snapshots, packed by `maintain`, then a byte flipped in the pack."""
    tree = make_user(cloud, data)
    (tree / "photo.bin").write_bytes(os.urandom(200_000))
    (tree / "a.txt").write_text("first\n")
    cloud("commit")
    (tree / "a.txt").write_text("second\n")
    cloud("commit")
    cloud("maintain")
    repo = data / "repos" / "alice" / "docs.git"
    return tree, repo, flip_in_pack(repo)


def test_a_commit_onto_a_damaged_pack_stops_and_says_so(cloud: Run, data: Path) -> None:
    tree, repo, oid = damaged_segment(cloud, data)
    before = subprocess.run(
        ["git", "--git-dir", str(repo), "rev-parse", "main"], capture_output=True, text=True
    ).stdout
    (tree / "a.txt").write_text("third\n")
    proc = cloud("commit", check=False)
    assert proc.returncode == 1
    assert "alice/docs" in proc.stderr and "damaged" in proc.stderr and oid in proc.stderr
    after = subprocess.run(
        ["git", "--git-dir", str(repo), "rev-parse", "main"], capture_output=True, text=True
    ).stdout
    assert after == before, "a snapshot was committed onto the damaged repository"
    # Known from now on, without checking again: the next commit says so too.
    again = cloud("commit", check=False)
    assert again.returncode == 1 and "damaged" in again.stderr
    with Accounts.open(data) as accounts:
        last = accounts.last_job("commit", "alice", "docs")
    assert last is not None and last.outcome == "error" and "damaged" in last.detail


def test_a_commit_onto_a_damaged_loose_object_stops(cloud: Run, data: Path) -> None:
    tree = make_user(cloud, data)
    content = os.urandom(50_000)
    (tree / "one.bin").write_bytes(content)
    cloud("commit")
    repo = data / "repos" / "alice" / "docs.git"
    oid, path = loose_blob(repo, content)
    assert path.is_file(), "the snapshot's blob is not loose before maintain"
    flip(path, path.stat().st_size // 2)
    (tree / "two.txt").write_text("more\n")
    proc = cloud("commit", check=False)
    assert proc.returncode == 1
    assert "damaged" in proc.stderr and oid in proc.stderr


def test_maintain_never_says_maintained_over_a_damaged_repository(cloud: Run, data: Path) -> None:
    _, _, oid = damaged_segment(cloud, data)
    proc = cloud("maintain", check=False)
    assert proc.returncode == 1
    assert "maintained" not in proc.stdout
    assert "alice/docs" in proc.stderr and oid in proc.stderr


def test_verify_marks_the_repository_and_commit_then_refuses(cloud: Run, data: Path) -> None:
    tree, _, _ = damaged_segment(cloud, data)
    proc = cloud("verify", "--json", check=False)
    assert proc.returncode == 1
    assert not json.loads(proc.stdout)["ok"]
    (tree / "a.txt").write_text("third\n")
    refused = cloud("commit", check=False)
    assert refused.returncode == 1 and "damaged" in refused.stderr and "verify" in refused.stderr


def test_a_restore_that_meets_the_damage_marks_the_repository(
    cloud: Run, data: Path, tmp_path: Path
) -> None:
    damaged_segment(cloud, data)
    proc = cloud("restore", "alice", "docs", "--to", str(tmp_path / "out"), check=False)
    assert proc.returncode != 0
    assert "damaged" in proc.stderr and "repair" in proc.stderr
    with Accounts.open(data) as accounts:
        found = accounts.last_job("integrity", "alice", "docs")
    assert found is not None and found.outcome == "error" and "restore" in found.detail


def test_runs_daily_commit_stops_on_a_damaged_repository_and_health_says_so(
    cloud: Run, data: Path, tmp_path: Path
) -> None:
    tree, repo, oid = damaged_segment(cloud, data)
    before = head(repo)
    (tree / "a.txt").write_text("third\n")
    server = Server(data, tmp_path, free_port(), free_port())
    # The snapshots so far were taken by hand: today's daily commit is due at once.
    server.start()
    try:
        server.wait_log("commit alice/docs: ")
        line = next(ln for ln in server.log().splitlines() if "commit alice/docs: " in ln)
        assert "damaged" in line and oid in line, line
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/health") as answer:
                health = json.loads(answer.read())
        except urllib.error.HTTPError as failed:
            health = json.loads(failed.read())
    finally:
        assert server.stop() == 0
    assert head(repo) == before
    assert "maintain alice/docs" not in server.log()
    assert not health["ok"] and health["commits"] == "failing", health


def head(repo: Path) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(repo), "rev-parse", "main"], capture_output=True, text=True
    ).stdout.strip()


def test_the_dashboard_says_the_history_is_damaged(cloud: Run, data: Path) -> None:
    _, _, oid = damaged_segment(cloud, data)
    web_admin(data, "alice")
    backend = CloudBackend(DataRoot(data))
    alice = backend.account("alice")
    assert alice is not None

    def problems() -> list[str]:
        (docs,) = [s for s in backend.dashboard(alice).segments if s.segment == "docs"]
        return [p.text for p in docs.problems]

    assert not any("damaged" in t for t in problems())
    assert cloud("verify", check=False).returncode == 1
    found = [t for t in problems() if "damaged" in t]
    assert found and oid in found[0] and "repair" in found[0], problems()
