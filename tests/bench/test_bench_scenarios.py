"""The sync, mirror and browse scenarios run end to end in --quick mode and write their rows.

Each starts real servers (the cloud, sshd, gunicorn) on loopback, so each takes a minute or
so; the numbers are not checked for size, only that every row is there and measured.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bench.lib.context import Context
from bench.lib.data import TreeStats
from bench.lib.servers import Sshd
from bench.scenarios import sync
from tests.bench.markdown import by_tool_step, number, section, table, verdicts
from tests.conftest import ROOT, require_tool

# A quick scenario takes about a minute on a busy machine; each timed step of it fails the run
# itself after 5 minutes (Context.step_timeout).
TIMEOUT = 900


def run_quick(tmp_path: Path, scenario: str, existing: str = "") -> str:
    """Run one scenario with --quick into a fresh file; its section's text."""
    out = tmp_path / "benchmarks.md"
    if existing:
        out.write_text(existing)
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--quick",
            "--scenario",
            scenario,
            "--out",
            str(out),
            "--work",
            str(tmp_path / "work"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, stderr = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        # SIGINT, not SIGKILL: the harness's `finally` blocks stop the servers it started.
        proc.send_signal(signal.SIGINT)
        try:
            _, stderr = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
        pytest.fail(f"{scenario} --quick took over {TIMEOUT} s: {stderr[-4000:]}")
    assert proc.returncode == 0, stderr[-4000:]
    text = out.read_text()
    body = section(text, scenario)
    assert f"## {scenario} (quick mode: not representative)" in body
    assert "Machine: " in body and "Other processes used" in body
    assert "**Problems" not in body, body
    return body


@pytest.mark.slow
def test_quick_sync_scenario(tmp_path: Path) -> None:
    require_tool("ssh-keygen")
    kept = (
        "# Benchmarks\n\n<!-- bench:snapshot:begin -->\n## snapshot\nkept\n"
        "<!-- bench:snapshot:end -->\n"
    )
    body = run_quick(tmp_path, "sync", existing=kept)
    text = (tmp_path / "benchmarks.md").read_text()
    assert "## snapshot\nkept\n" in text, "another scenario's section was not kept"
    assert text.index("bench:snapshot:begin") < text.index("bench:sync:begin")
    assert "| tool | step | time (s) | × rclone |" in body
    rows = by_tool_step(table(body))
    for step in ("first sync", "no-change sync"):
        for tool in ("rclone", "bluegrass"):
            row = rows[(tool, step)]
            assert number(row["time (s)"]) > 0, row
            assert number(row["× rclone"]) > 0, row
            assert number(row["peak RSS (MB)"]) > 0, row
        rsync = rows[("rsync", step)]
        missing = Sshd.missing()
        if missing:
            # Reported, not a crash: the row names the packages to install.
            assert "not installed" in rsync["note"] and missing[0] in rsync["note"], rsync
        else:
            assert number(rsync["time (s)"]) > 0 and number(rsync["× rclone"]) > 0, rsync
    assert "median of 3" in rows[("bluegrass", "no-change sync")]["note"]
    found = verdicts(body)
    for goal in ("first sync ≤ 1.3× plain rclone", "no-change sync ≤ 1.5× plain rclone"):
        assert found[goal] in ("pass", "**FAIL**"), found
    assert "Tree: a generated tree (--quick)" in body
    assert "rclone v1." in body


@pytest.mark.slow
def test_quick_mirror_scenario(tmp_path: Path) -> None:
    body = run_quick(tmp_path, "mirror")
    rows = by_tool_step(table(body))
    job = "incremental mirror, the daemon's job (1% changed)"
    for step in ("first mirror", "incremental mirror (1% changed)", "up-to-date mirror", job):
        for tool in ("git", "bluegrass"):
            row = rows[(tool, step)]
            assert number(row["time (s)"]) > 0, row
            assert number(row["× git"]) > 0, row
            assert number(row["peak RSS (MB)"]) > 0, row
    assert "median of 3 jobs" in rows[("bluegrass", job)]["note"]
    idle = rows[("bluegrass", "daemon idle")]
    assert number(idle["peak RSS (MB)"]) > 0 and "median of" in idle["note"], idle
    for tool in ("git", "bluegrass"):
        row = rows[(tool, "mirror a 64 MiB file")]
        assert number(row["time (s)"]) > 0 and number(row["peak RSS (MB)"]) > 0, row
    found = verdicts(body)
    for goal in (
        "first mirror ≤ 1.1× plain git clone",
        "incremental mirror (1% changed), the daemon's job, ≤ 1.1× plain git fetch",
        "daemon idle RSS ≤ 60 MB",
        "daemon peak RSS while it mirrors a 64 MiB file ≤ 200 MB",
    ):
        assert found[goal] in ("pass", "**FAIL**"), found


@pytest.mark.slow
def test_quick_browse_scenario(tmp_path: Path) -> None:
    require_tool("curl")
    body = run_quick(tmp_path, "browse")
    rows = by_tool_step(table(body))
    for state in ("before maintain", "after maintain"):
        for step in (
            f"500-entry folder, old snapshot, {state}",
            f"file history over 100 snapshots, {state}",
        ):
            for tool in ("git", "bluegrass"):
                row = rows[(tool, step)]
                assert number(row["p50 (ms)"]) > 0 and number(row["p95 (ms)"]) > 0, row
                assert number(row["p95 (ms)"]) >= number(row["p50 (ms)"]), row
                assert number(row["× git"]) > 0, row
            assert number(rows[("bluegrass", step)]["peak RSS (MB)"]) > 0
    for segment in ("docs", "journal"):
        assert number(rows[("bluegrass", f"maintain {segment}")]["time (s)"]) > 0
    for tool in ("git", "bluegrass"):
        row = rows[(tool, "0.03 GB folder as zip")]
        assert number(row["time (s)"]) > 0 and number(row["MB/s"]) > 0, row
    found = verdicts(body)
    for goal in (
        "500-entry folder, old snapshot, after maintain: p95 ≤ 150 ms",
        "file history over 100 snapshots, after maintain: p95 ≤ 300 ms",
        "0.03 GB folder as zip: ≥ 0.8× the speed of `git archive` to a file",
    ):
        assert found[goal] in ("pass", "**FAIL**"), found


def test_sync_reports_rsync_as_not_installed_without_sshd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Sshd, "PROGRAM", str(tmp_path / "no-sshd-here"))
    ctx = Context(work=tmp_path, quick=True, tools=[])
    rows = sync._rsync(ctx, tmp_path, tmp_path, TreeStats(1, 0, 0, 1))
    assert [(r.tool, r.step, r.seconds) for r in rows] == [
        ("rsync", "first sync", None),
        ("rsync", "no-change sync", None),
    ]
    for row in rows:
        assert "not installed" in row.note and "openssh-server" in row.note, row.note
    assert any("openssh-server" in n for n in ctx.notes)
    assert ctx.problems == []
