"""`bluegrass-cloud run` replicates after its daily commit, and keeps trying with back-off
while the bucket cannot be reached (a real `rclone serve s3` on loopback, started late)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.cloud.conftest import Run
from tests.cloud.server import Client, Server, enrolled, wait_for
from tests.cloud.test_replica import wipe_but_config
from tests.support.net import free_port
from tests.support.s3 import S3Server


def test_run_replicates_after_the_daily_commit_once_the_bucket_answers(
    cloud: Run, data: Path, tmp_path: Path
) -> None:
    cloud("init")
    cloud("user", "add", "alice")
    live = data / "files" / "alice" / "docs"
    live.mkdir()
    (live / "a.txt").write_text("replicated by run\n")
    s3 = S3Server(tmp_path / "s3", free_port())
    (data / "bluegrass-cloud.toml").write_text(s3.config_text())
    server = Server(data, tmp_path, free_port(), free_port())
    server.start()
    try:
        # Never committed: the day's commit is overdue and runs at once; the bucket is down.
        server.wait_log("commit alice/docs: committed")
        server.wait_log("; retrying in 10s", timeout=60)
        assert "connection refused" in server.log()
        s3.start()
        server.wait_log("alice: 3 objects, manifest manifests/000001.json", timeout=90)
    finally:
        assert server.stop() == 0
        checked = cloud("replica", "check", "--json", check=False)
        s3.stop()
    out = json.loads(checked.stdout)
    assert out["ok"], out
    assert [a["manifest"] for a in out["areas"]] == ["manifests/000001.json"] * 2


def test_an_enrolled_device_logs_in_to_the_rebuilt_server_as_before(
    cloud: Run, data: Path, tmp_path: Path
) -> None:
    """Same host key (pinned from the enrollment code), same device secret, same files."""
    cloud("init")
    alice = enrolled(cloud("user", "add", "alice", "--json").stdout)
    live = data / "files" / "alice" / "docs"
    live.mkdir()
    (live / "before.txt").write_text("from before the loss\n")
    cloud("commit")
    s3 = S3Server(tmp_path / "s3", free_port())
    s3.start()
    try:
        (data / "bluegrass-cloud.toml").write_text(s3.config_text())
        cloud("replicate")
        wipe_but_config(data)
        cloud("rebuild", "--from-replica")
        server = Server(data, tmp_path, free_port(), free_port())
        server.start()
        try:
            client = Client(server.sftp_port, tmp_path, alice.code.host_key)
            listing = client.rclone("alice", "lsf", "-R", ":sftp:", password=alice.password)
            assert listing.returncode == 0, listing.stderr
            assert "docs/before.txt" in listing.stdout.splitlines()
            new = tmp_path / "after.txt"
            new.write_text("written after the rebuild\n")
            sent = client.rclone(
                "alice", "copyto", str(new), ":sftp:docs/after.txt", password=alice.password
            )
            assert sent.returncode == 0, sent.stderr
            assert (live / "after.txt").read_text() == "written after the rebuild\n"
        finally:
            assert server.stop() == 0
    finally:
        s3.stop()


def processes_naming(path: Path) -> list[str]:
    """Command lines of running processes that mention `path` (ours: the staging folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile
        if any(os.fsencode(path) in arg for arg in argv):
            found.append(b" ".join(argv).decode(errors="replace"))
    return found


def sending_into(data: Path, s3: S3Server, user: str) -> bool:
    """Whether an upload into the user's area of the bucket is under way."""
    try:
        prefix = json.loads((data / "replica" / "keys" / f"{user}.json").read_text())["prefix"]
    except (OSError, ValueError):
        return False  # no secret yet: nothing of the user's is being sent
    area = s3.bucket_dir / prefix
    return area.is_dir() and any(".rclone_temp_put_" in p.name for p in area.rglob("*"))


def test_stopping_run_mid_upload_ends_its_rclone(cloud: Run, data: Path, tmp_path: Path) -> None:
    cloud("init")
    cloud("user", "add", "alice")
    live = data / "files" / "alice" / "docs"
    live.mkdir()
    (live / "big.bin").write_bytes(os.urandom(48 << 20))
    cloud("commit")
    s3 = S3Server(tmp_path / "s3", free_port())
    s3.start()
    try:
        (data / "bluegrass-cloud.toml").write_text(s3.config_text())
        server = Server(data, tmp_path, free_port(), free_port())
        server.start()
        try:
            # alice's bundle is being sent: rclone writes it under a temporary name first
            # (in her area: the server's state goes up beside it, under another prefix).
            wait_for(lambda: sending_into(data, s3, "alice"), 60, "the bundle's upload to begin")
        finally:
            assert server.stop() == 0
        assert processes_naming(data / "replica") == []
        # What the stopped run left is finished by the next replicate.
        out = json.loads(cloud("replicate", "--json").stdout)
        alice = next(a for a in out["areas"] if a["area"] == "alice")
        assert alice["new_bundles"] == [] and alice["manifest"] == "manifests/000001.json"
    finally:
        s3.stop()
