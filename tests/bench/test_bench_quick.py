"""The benchmark harness runs end to end on a small tree and writes a complete table."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

TOOLS = ["floor", "restic", "borg", "bluegrass"]
STEPS = ["first snapshot", "no-change snapshot", "1% changed snapshot", "gc → repository size"]


def _table_rows(markdown: str) -> list[list[str]]:
    """The data rows of the first table whose header starts with `| tool | step |`."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| tool | step |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def _number(cell: str) -> float:
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)×?", cell)
    assert match, f"not a number: {cell!r}"
    return float(match.group(1))


@pytest.mark.slow
def test_quick_snapshot_scenario_writes_a_full_table(tmp_path: Path) -> None:
    for tool in ("restic", "borg"):
        if shutil.which(tool) is None:
            pytest.skip(f"the benchmark compares against restic and borg: {tool} not installed")
    out = tmp_path / "benchmarks.md"
    # A section of another scenario, which the run must keep, after its own.
    out.write_text(
        "# Benchmarks\n\n<!-- bench:sync:begin -->\n## sync\nkept\n<!-- bench:sync:end -->\n"
    )
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--quick",
            "--scenario",
            "snapshot",
            "--out",
            str(out),
            "--work",
            str(tmp_path / "work"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert "## sync\nkept\n" in text, "another scenario's section was not kept"
    assert text.index("bench:snapshot:begin") < text.index("bench:sync:begin")
    rows = _table_rows(text)
    by_step: dict[str, dict[str, list[str]]] = {}
    for row in rows:
        by_step.setdefault(row[1], {})[row[0]] = row
    for step in [*STEPS, "64 MiB file"]:
        assert set(by_step.get(step, {})) == set(TOOLS), f"{step}: {sorted(by_step.get(step, {}))}"
    for step in ["first snapshot", "no-change snapshot", "1% changed snapshot", "64 MiB file"]:
        for tool, row in by_step[step].items():
            assert _number(row[2]) >= 0, (tool, step)  # time
            assert _number(row[3]) > 0, (tool, step)  # ratio to the floor
            assert _number(row[4]) > 0, (tool, step)  # peak RSS
    for tool, row in by_step["gc → repository size"].items():
        assert _number(row[6]) > 0, tool  # repository size
    assert "maintain" in by_step and "bluegrass" in by_step["maintain"]
    assert re.search(r"\| first snapshot ≤ 1\.15× plain git \| .* \| (pass|\*\*FAIL\*\*) \|", text)
    assert "Machine: " in text and "restic 0." in text
