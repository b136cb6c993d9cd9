"""`bluegrass-cloud run` replicates after its daily commit, and keeps trying with back-off
while the bucket cannot be reached (a real `rclone serve s3` on loopback, started late)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cloud.conftest import Run
from tests.cloud.server import Server
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
