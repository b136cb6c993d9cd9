"""The appliance against the real cloud: `bluegrass-cloud run` (gunicorn + git http-backend for
histories, rclone serve sftp with its auth proxy for files), enrolled with a real device code."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.appliance.conftest import Appliance, free_port, fsck, git
from tests.conftest import VENV_BIN


class Cloud:
    def __init__(self, data: Path) -> None:
        self.data = data

    def __call__(self, *args: str) -> str:
        proc = subprocess.run(
            [str(VENV_BIN / "bluegrass-cloud"), "--data", str(self.data), *args],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, f"bluegrass-cloud {args}: {proc.stderr}"
        return proc.stdout


@contextlib.contextmanager
def running_cloud(tmp_path: Path) -> Iterator[tuple[Cloud, int]]:
    cloud = Cloud(tmp_path / "data")
    cloud("init")
    sftp, http, device = free_port(), free_port(), free_port()
    config = cloud.data / "bluegrass-cloud.toml"
    config.write_text(f"[server]\nsftp_port = {sftp}\nhttp_port = {http}\ndevice_port = {device}\n")
    log = (tmp_path / "cloud.log").open("wb")
    proc = subprocess.Popen(
        [str(VENV_BIN / "bluegrass-cloud"), "--data", str(cloud.data), "run"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        # Ready when its health page answers 200 (web server and sync endpoint both up).
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError):
                url = f"http://127.0.0.1:{http}/health"
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if answer.status == 200:
                        break
            assert proc.poll() is None, (tmp_path / "cloud.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "cloud.log").read_text()
            time.sleep(0.2)
        yield cloud, http
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        log.close()


@pytest.mark.slow
def test_mirror_and_files_from_the_real_cloud(appliance: Appliance, tmp_path: Path) -> None:
    with running_cloud(tmp_path) as (cloud, _):
        cloud("user", "add", "alice")
        code = json.loads(cloud("device", "add", "alice", "--name", "pi", "--json"))
        folder = cloud.data / "files" / "alice" / "docs"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "hello.txt").write_text("hello from the cloud\n")
        cloud("commit")
        head = git(
            "--git-dir", str(cloud.data / "repos" / "alice" / "docs.git"), "rev-parse", "main"
        ).stdout.strip()
        drive = tmp_path / "drive"
        appliance("enroll", code["enrollment_code"])
        appliance.global_args = ["--drive-dir", str(drive)]

        mirrored = appliance.json("mirror")
        pulled = appliance.json("files")

        assert mirrored["outcome"] == "ok", mirrored
        assert pulled["outcome"] == "ok", pulled
        mirror = drive / "bluegrass" / "alice" / "docs.git"
        assert git("--git-dir", str(mirror), "rev-parse", "main").stdout.strip() == head
        fsck(mirror)
        assert (drive / "bluegrass" / "alice" / "docs" / "hello.txt").read_text() == (
            "hello from the cloud\n"
        )

        # A revoked device is refused by both sides, and says so.
        cloud("device", "revoke", "alice", code["device"])
        refused = appliance.json("mirror")
        assert refused["outcome"] == "cloud-refused", refused
        assert "cloud-refused" in [a["kind"] for a in appliance.json("alerts")["alerts"]]
