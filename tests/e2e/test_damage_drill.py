"""The drill of issue 16 part 6, end to end with every part real: `bluegrass-cloud run`, a Pi
(`bluegrass-appliance`) enrolled over its HTTPS port and mirroring onto a drive folder.

A byte flips in the cloud's pack, in a file the Pi has already mirrored; the cloud commits
on (a new snapshot the Pi has not fetched yet). Then: the next commit is refused and says
why, /health goes red, the Pi's mirror still takes nothing it cannot check; `repair
--from-drive` heals the cloud from the Pi's drive, keeping the snapshot only the cloud had;
`verify` passes; commits and the mirror resume.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from bluegrass.cloud.accounts import Accounts

from tests.appliance.conftest import Appliance
from tests.cloud.server import Server
from tests.cloud.test_drills import runner
from tests.support.damage import flip, flip_in_pack
from tests.support.net import free_port


def rev(repo: Path) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(repo), "rev-parse", "main"], capture_output=True, text=True
    ).stdout.strip()


def health(port: int) -> dict:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as failed:
        return json.loads(failed.read())


@pytest.mark.slow
def test_damage_is_refused_alerted_and_repaired_from_the_pis_drive(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cloud = runner(data)
    cloud("init")
    sftp, http = free_port(), free_port()
    server = Server(data, tmp_path, sftp, http)
    (data / "bluegrass-cloud.toml").write_text(
        f"[server]\nsftp_port = {sftp}\nhttp_port = {http}\ndevice_port = {server.device_port}\n"
    )
    cloud("user", "add", "alice")
    code = json.loads(cloud("device", "add", "alice", "--name", "pi", "--json").stdout)
    tree = data / "files" / "alice" / "docs"
    tree.mkdir()
    (tree / "photo.bin").write_bytes(os.urandom(300_000))
    (tree / "letter.txt").write_text("dear grandma\n")
    cloud("commit")
    repo = data / "repos" / "alice" / "docs.git"
    server.start()
    try:
        server.wait_log("commit alice/docs: ")  # the daily commit due at start (no change)
        pi = Appliance(tmp_path / "pi")
        pi("enroll", code["enrollment_code"])
        drive = tmp_path / "drive"
        pi.global_args = ["--drive-dir", str(drive)]
        assert pi.json("mirror")["outcome"] == "ok"
        mirror = drive / "bluegrass" / "alice" / "docs.git"
        assert rev(mirror) == rev(repo)

        # A snapshot the Pi has not fetched yet, everything packed, then the disk flips a bit
        # in the photo (which the Pi's drive has).
        (tree / "letter.txt").write_text("dear grandma, the photo is attached\n")
        cloud("commit")
        newest = rev(repo)
        cloud("maintain")
        damaged = flip_in_pack(repo)

        (tree / "p.s.txt").write_text("p.s.\n")
        refused = cloud("commit", check=False)
        assert refused.returncode == 1
        assert "alice/docs" in refused.stderr and "damaged" in refused.stderr
        assert damaged in refused.stderr and "repair" in refused.stderr
        assert rev(repo) == newest
        assert health(http)["commits"] == "failing"
        maintained = cloud("maintain", check=False)
        assert maintained.returncode == 1 and "maintained" not in maintained.stdout
        # The Pi fetches the new snapshot; the photo is not sent again, so it mirrors fine and
        # its copy of the photo stays the good one.
        assert pi.json("mirror")["outcome"] == "ok"
        assert rev(mirror) == newest

        out = json.loads(
            cloud("repair", "alice", "docs", "--from-drive", str(drive), "--json").stdout
        )
        assert out["head"] == newest and out["lost"] == []
        assert json.loads(cloud("verify", "--json").stdout)["ok"]

        resumed = json.loads(cloud("commit", "--json").stdout)
        assert resumed["errors"] == [] and resumed["segments"][0]["committed"]
        assert health(http)["commits"] == "ok"
        assert pi.json("mirror")["outcome"] == "ok"
        assert rev(mirror) == rev(repo) != newest
        restored = tmp_path / "restored"
        cloud("restore", "alice", "docs", "--to", str(restored))
        assert (restored / "photo.bin").read_bytes() == (tree / "photo.bin").read_bytes()
    finally:
        assert server.stop() == 0


@pytest.mark.slow
def test_the_pi_alerts_when_the_damaged_object_is_one_it_still_needs(tmp_path: Path) -> None:
    """The drill's other half: the damage is in a snapshot the Pi has not fetched yet."""
    data = tmp_path / "data"
    cloud = runner(data)
    cloud("init")
    sftp, http = free_port(), free_port()
    server = Server(data, tmp_path, sftp, http)
    (data / "bluegrass-cloud.toml").write_text(
        f"[server]\nsftp_port = {sftp}\nhttp_port = {http}\ndevice_port = {server.device_port}\n"
    )
    cloud("user", "add", "alice")
    code = json.loads(cloud("device", "add", "alice", "--name", "pi", "--json").stdout)
    tree = data / "files" / "alice" / "docs"
    tree.mkdir()
    (tree / "letter.txt").write_text("dear grandma\n")
    cloud("commit")
    repo = data / "repos" / "alice" / "docs.git"
    server.start()
    try:
        server.wait_log("commit alice/docs: ")
        pi = Appliance(tmp_path / "pi")
        pi("enroll", code["enrollment_code"])
        drive = tmp_path / "drive"
        pi.global_args = ["--drive-dir", str(drive)]
        assert pi.json("mirror")["outcome"] == "ok"
        mirror = drive / "bluegrass" / "alice" / "docs.git"
        kept = rev(mirror)
        (tree / "photo.bin").write_bytes(os.urandom(300_000))
        cloud("commit")
        cloud("maintain")
        flip_in_pack(repo)

        failed = pi("mirror", check=False)

        assert failed.returncode == 1
        assert rev(mirror) == kept
        alerts = pi.json("alerts")["alerts"]
        assert [a["kind"] for a in alerts] == ["cloud-damaged"], alerts
        assert "alice/docs" in alerts[0]["message"] and "kept" in alerts[0]["message"]
        # The photo's only copy is the damaged one: repair names the snapshot and refuses.
        refused = cloud("repair", "alice", "docs", "--from-drive", str(drive), check=False)
        assert refused.returncode == 1 and "--force" in refused.stderr
    finally:
        assert server.stop() == 0


@pytest.mark.slow
def test_a_fetch_the_cloud_cannot_serve_marks_its_repository(tmp_path: Path) -> None:
    """A damaged loose object: the cloud's own upload-pack fails reading it as the Pi fetches,
    so the cloud knows before its next commit, and says so in its job history."""
    data = tmp_path / "data"
    cloud = runner(data)
    cloud("init")
    sftp, http = free_port(), free_port()
    server = Server(data, tmp_path, sftp, http)
    (data / "bluegrass-cloud.toml").write_text(
        f"[server]\nsftp_port = {sftp}\nhttp_port = {http}\ndevice_port = {server.device_port}\n"
    )
    cloud("user", "add", "alice")
    code = json.loads(cloud("device", "add", "alice", "--name", "pi", "--json").stdout)
    tree = data / "files" / "alice" / "docs"
    tree.mkdir()
    (tree / "letter.txt").write_text("dear grandma\n")
    cloud("commit")
    repo = data / "repos" / "alice" / "docs.git"
    server.start()
    try:
        server.wait_log("commit alice/docs: ")
        pi = Appliance(tmp_path / "pi")
        pi("enroll", code["enrollment_code"])
        pi.global_args = ["--drive-dir", str(tmp_path / "drive")]
        assert pi.json("mirror")["outcome"] == "ok"
        content = os.urandom(100_000)
        (tree / "photo.bin").write_bytes(content)
        cloud("commit")
        oid = (
            subprocess.run(
                ["git", "hash-object", "--stdin"], input=content, capture_output=True, check=True
            )
            .stdout.decode()
            .strip()
        )
        loose = repo / "objects" / oid[:2] / oid[2:]
        flip(loose, loose.stat().st_size // 2)

        assert pi("mirror", check=False).returncode == 1

        assert [a["kind"] for a in pi.json("alerts")["alerts"]] == ["cloud-damaged"]
        mark = json.loads((repo / "bluegrass" / "damaged.json").read_text())
        assert mark["found_by"] == "the git HTTP serving", mark
        with Accounts.open(data) as accounts:
            found = accounts.last_job("integrity", "alice", "docs")
        assert found is not None and found.outcome == "error"
    finally:
        assert server.stop() == 0
