"""The replica scenario runs end to end in --quick mode against a real `rclone serve s3`.

Only that every row is there and measured, that the run found no problem (the rebuilt
histories are at the cloud's heads), and that the targets were evaluated; the numbers of a
generated tree on a shared machine are not checked against the targets.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.bench.markdown import by_tool_step, number, section, table, verdicts
from tests.conftest import ROOT


def test_quick_replica_scenario(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--quick",
            "--scenario",
            "replica",
            "--out",
            str(out),
            "--work",
            str(tmp_path / "work"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    body = section(out.read_text(), "replica")
    assert "## replica (quick mode: not representative)" in body
    assert "**Problems" not in body, body
    rows = by_tool_step(table(body))
    assert set(rows) == {
        ("rclone copy", "first upload"),
        ("bluegrass", "first upload"),
        ("git bundle create, alone", "first upload"),
        ("rclone copy", "nothing new"),
        ("bluegrass", "nothing new"),
        ("rclone copy", "a day's 1% change"),
        ("bluegrass", "a day's 1% change"),
        ("git clone", "rebuild (histories and files)"),
        ("bluegrass", "rebuild (histories and files)"),
    }, rows
    for row in rows.values():
        assert number(row["time (s)"]) > 0 and number(row["peak RSS (MB)"]) > 0, row
    # The first uploads put something in their buckets; nothing new sends nothing.
    for tool in ("rclone copy", "bluegrass"):
        assert number(rows[(tool, "first upload")]["sent to bucket (MB)"]) > 0
        assert number(rows[(tool, "nothing new")]["sent to bucket (MB)"]) == 0
    assert (
        "10 histories at the cloud's heads"
        in rows[("bluegrass", "rebuild (histories and files)")]["note"]
    )
    assert len(verdicts(body)) == 3, body
