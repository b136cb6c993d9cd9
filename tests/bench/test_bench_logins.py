"""The logins scenario runs end to end in --quick mode against a real `bluegrass-cloud run`.

Only that every row is there, measured, and that the logins were decided as the scenario
says (accepted, or refused as busy by the checker's bound); the sizes are not checked.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.bench.markdown import number, section, table
from tests.conftest import ROOT


def test_quick_logins_scenario(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--quick",
            "--scenario",
            "logins",
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
    body = section(out.read_text(), "logins")
    assert "## logins (quick mode: not representative)" in body
    assert "**Problems" not in body, body
    rows = {(r["per-login program"], r["step"]): r for r in table(body, "| per-login program |")}
    assert set(rows) == {
        ("checker client", "one login (×5, one after another)"),
        ("old in-process proxy", "one login (×5, one after another)"),
        ("checker client", "20 logins at once"),
        ("old in-process proxy", "20 logins at once"),
    }, rows
    for row in rows.values():
        assert number(row["peak RSS (MB)"]) > 0 and number(row["wall (s)"]) > 0, row
    burst = rows[("checker client", "20 logins at once")]["note"]
    accepted, busy = (int(part.split()[0]) for part in burst.split(";")[0].split(", "))
    assert accepted >= 1 and accepted + busy == 20, burst
