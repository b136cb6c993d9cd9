"""Scenario "sync": a laptop's first and no-change sync, against plain rclone and rsync.

A real cloud (`bluegrass-cloud run` on loopback ports) and a real laptop (`bluegrass enroll`,
`segment add`, `bluegrass sync`), against plain `rclone sync` of the same tree to the same
sync endpoint with the same credentials and rclone binary, and `rsync -a` over a throwaway
OpenSSH server on loopback.
"""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

from bluegrass.core import rclone

from bench.lib import data
from bench.lib.context import Context
from bench.lib.measure import Measurement, measure, run_quiet
from bench.lib.report import (
    Row,
    Target,
    add_ratios,
    measured_row,
    median_row,
    megabytes,
    project_revision,
)
from bench.lib.servers import Cloud, Laptop, Sshd

TITLE = "Sync: a laptop's first and no-change sync, against plain rclone and rsync over SSH"
USES_TOOLS = False
SUPPORTS_SUBSET = True
COLUMNS = ["tool", "step", "seconds", "ratio", "peak_rss", "peak_anon", "note"]
HEADERS = {"ratio": "× rclone"}

USER = "bench"
SEGMENT = "linux"
PLAIN_SEGMENT = "rclone-plain"  # plain rclone's folder on the cloud, beside the segment's
FLOOR = "rclone"
BLUEGRASS = "bluegrass"
RSYNC = "rsync"
STEP_FIRST = "first sync"
STEP_NOCHANGE = "no-change sync"
# The first no-change run after a sync that moved files runs bisync in full (its pre-run states
# of both sides are then kept); the runs after it compare states and skip bisync (decision 56).
STEP_CONFIRM = "no-change sync, first after a change (full bisync)"
NOCHANGE_RUNS = 3
TARGET_FIRST = 1.3
TARGET_NOCHANGE = 1.5
# Flags plain rclone gets so that it moves what bluegrass's bisync moves: symlinks as
# .rclonelink files, and empty folders (the laptop client passes both).
PLAIN_FLAGS = ["--links", "--create-empty-src-dirs"]


def versions(ctx: Context) -> dict[str, str]:
    out = run_quiet([str(rclone.binary()), "version"]).stdout.decode().split()
    rsync = run_quiet(["rsync", "--version"]) if shutil.which("rsync") else None
    rsync_version = rsync.stdout.decode().split()[2] if rsync and rsync.stdout else "not installed"
    return {
        "bluegrass": project_revision(("core", "laptop-client", "cloud")),
        "rclone": out[1] if len(out) > 1 else "?",
        "rsync": rsync_version,
        "OpenSSH": Sshd.version(),
    }


def describe_method(ctx: Context) -> list[str]:
    return [
        "One cloud, `bluegrass-cloud run` on free loopback ports, with user `bench`; its two "
        "folders (`linux` for the segment, `rclone-plain` for plain rclone) are made before "
        "it starts and its scheduler's catching-up commit of them (empty) is waited for, so "
        "no daily commit runs during a timed step (see Notes).",
        "bluegrass: a laptop with its own HOME runs `bluegrass enroll CODE` (the code from "
        "`user add bench --json`), `segment add linux TREE`, then `bluegrass sync linux "
        "--json`, timed: the first sync (the check file, then `rclone bisync --resync`) and "
        "then no-change syncs. The first no-change run after a sync that moved files runs "
        "bisync in full (with its safety flags) and keeps the state of both sides taken "
        "before it; the runs after it walk the laptop's folder, ask the cloud for its "
        "folder's state over HTTP (both at once) and skip bisync when neither changed "
        "(docs/decisions.md 56). Both are shown: the confirming run once, then the "
        "no-change step as a daemon runs it between changes. The notes give rclone bisync's "
        "own elapsed time, from the JSON log the laptop keeps of the run "
        "(`STATE/segments/linux/last.log`): the rest is what bluegrass adds around it "
        "(start-up, the scan for unsyncable files, both sides' states).",
        "rclone: `rclone sync TREE bluegrass:rclone-plain --links --create-empty-src-dirs` "
        "with the laptop's own `rclone.conf` (same endpoint, same device credentials, same "
        "rclone binary from the venv); `--links` and `--create-empty-src-dirs` because the "
        "laptop client passes them too, so both move the same files.",
        "rsync: `rsync -a TREE/ USER@127.0.0.1:DEST/` over `ssh` to a throwaway `sshd` on a "
        "free loopback port (its own host key, one client key, no PAM), the destination on the "
        "same disk as the cloud's folders.",
        "Each tool syncs its own hard-linked copy (`cp -al`) of the cached tree, read once in "
        "full first (warm page cache), with `sync` before each timed step. The no-change step "
        f"runs {NOCHANGE_RUNS} times: its time is the median, its memory the largest. After "
        "each first sync the destination's file count is checked against the tree.",
        "Time includes process start-up and the SSH login. Peak RSS is the client's process "
        "tree only (bluegrass and its rclone; rclone; rsync and ssh), sampled every 20 ms; "
        "the servers' memory is not counted for anyone.",
    ]


def _laptop(run_dir: Path, code: str, tree: Path) -> Laptop:
    laptop = Laptop(run_dir / "laptop")
    laptop.run("enroll", code)
    folder = laptop.home / SEGMENT
    data.hardlink_copy(tree, folder)
    laptop.run("segment", "add", SEGMENT, str(folder))
    return laptop


def _sync_report(ctx: Context, m: Measurement, step: str) -> dict[str, object]:
    """The segment's entry of `sync --json`; a problem when it is not `ok`."""
    try:
        report = json.loads(m.output())
        item = next(s for s in report["segments"] if s["segment"] == SEGMENT)
    except (json.JSONDecodeError, KeyError, StopIteration, TypeError) as exc:
        ctx.problem(f"bluegrass, {step}: no result for {SEGMENT} in `sync --json` ({exc})")
        return {}
    if item.get("outcome") != "ok":
        ctx.problem(f"bluegrass, {step}: outcome {item.get('outcome')}: {item.get('message')}")
    return dict(item)


def _check_copy(ctx: Context, tool: str, dest: Path, stats: data.TreeStats, extra: int) -> None:
    """The destination holds every file: symlinks arrive as links (rsync) or, over rclone's
    sftp, as NAME.rclonelink files (`extra`: the check file bluegrass adds)."""
    got = data.tree_stats(dest)
    if tool == RSYNC:
        ok = got.files == stats.files and got.symlinks == stats.symlinks
        want = f"{stats.files} files and {stats.symlinks} symlinks"
    else:
        ok = got.files == stats.files + stats.symlinks + extra and got.symlinks == 0
        want = f"{stats.files + stats.symlinks + extra} files"
    if not ok:
        ctx.problem(
            f"{tool}: the destination holds {got.files} files and {got.symlinks} symlinks, "
            f"expected {want}"
        )


def _timed(
    ctx: Context, tool: str, step: str, cmd: list[str], logs: Path, **kw: object
) -> Measurement:
    data.flush()
    ctx.log(f"{tool}: {step}")
    name = f"{tool}-{step.replace(' ', '-')}"
    m = measure(cmd, log_dir=logs, name=name, timeout=ctx.step_timeout, **kw)  # type: ignore[arg-type]
    ctx.log(f"{tool}: {step}: {m.seconds:.2f} s, peak RSS {megabytes(m.peak_rss)} MB")
    return m


def _nochange(
    ctx: Context,
    tool: str,
    cmd: list[str],
    logs: Path,
    runs: int = NOCHANGE_RUNS,
    at: int = 0,
    **kw: object,
) -> list[Measurement]:
    done = []
    for i in range(at, at + runs):
        data.flush()
        ctx.log(f"{tool}: {STEP_NOCHANGE} ({i + 1}/{NOCHANGE_RUNS})")
        name = f"{tool}-nochange-{i + 1}"
        m = measure(cmd, log_dir=logs, name=name, timeout=ctx.step_timeout, **kw)  # type: ignore[arg-type]
        ctx.log(f"{tool}: {STEP_NOCHANGE} ({i + 1}/{NOCHANGE_RUNS}): {m.seconds:.2f} s")
        done.append(m)
    return done


def _plain_rclone(
    ctx: Context, run_dir: Path, laptop: Laptop, cloud: Cloud, tree: Path, stats: data.TreeStats
) -> list[Row]:
    src = run_dir / "rclone-tree"
    data.hardlink_copy(tree, src)
    data.warm_up(src)
    cmd = [
        str(rclone.binary()),
        "--config",
        str(laptop.rclone_config),
        "sync",
        str(src),
        f"bluegrass:{PLAIN_SEGMENT}",
        *PLAIN_FLAGS,
    ]
    logs = run_dir / "logs"
    first = _timed(ctx, FLOOR, STEP_FIRST, cmd, logs, env=laptop.env, cwd=laptop.home)
    _check_copy(ctx, FLOOR, cloud.live_tree(USER, PLAIN_SEGMENT), stats, extra=0)
    runs = _nochange(ctx, FLOOR, cmd, logs, env=laptop.env, cwd=laptop.home)
    return [measured_row(FLOOR, STEP_FIRST, first), median_row(FLOOR, STEP_NOCHANGE, runs)]


def _bisync_seconds(laptop: Laptop) -> float | None:
    """rclone bisync's own elapsed time in the last sync, from the JSON log the laptop keeps
    of it (STATE/segments/<segment>/last.log): what bluegrass adds is the rest."""
    log = laptop.state_dir / "segments" / SEGMENT / "last.log"
    elapsed = None
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        stats = record.get("stats") if isinstance(record, dict) else None
        if isinstance(stats, dict) and isinstance(stats.get("elapsedTime"), int | float):
            elapsed = float(stats["elapsedTime"])
    return elapsed


def _bisync_note(seconds: list[float | None]) -> str:
    known = [s for s in seconds if s is not None]
    if not known:
        return ""
    return f"; rclone bisync's own elapsed time {statistics.median(known):.2f} s"


def _bluegrass(
    ctx: Context, run_dir: Path, laptop: Laptop, cloud: Cloud, stats: data.TreeStats
) -> list[Row]:
    data.warm_up(laptop.home / SEGMENT)
    cmd = laptop.command("sync", SEGMENT, "--json")
    logs = run_dir / "logs"
    first = _timed(ctx, BLUEGRASS, STEP_FIRST, cmd, logs, env=laptop.env, cwd=laptop.home)
    first_bisync = _bisync_seconds(laptop)
    report = _sync_report(ctx, first, STEP_FIRST)
    # The check file .bluegrass-check is one more file on the cloud.
    _check_copy(ctx, BLUEGRASS, cloud.live_tree(USER, SEGMENT), stats, extra=1)
    confirm = _timed(
        ctx, BLUEGRASS, "confirming no-change sync", cmd, logs, env=laptop.env, cwd=laptop.home
    )
    item = _sync_report(ctx, confirm, STEP_CONFIRM)
    if not item.get("bisync") or item.get("files_transferred"):
        ctx.problem(f"bluegrass, {STEP_CONFIRM}: expected a full bisync moving nothing: {item}")
    confirm_row = measured_row(
        BLUEGRASS, STEP_CONFIRM, confirm, _bisync_note([_bisync_seconds(laptop)]).lstrip("; ")
    )
    runs, ran_bisync, moved = [], [], []
    for i in range(NOCHANGE_RUNS):
        runs += _nochange(ctx, BLUEGRASS, cmd, logs, env=laptop.env, cwd=laptop.home, runs=1, at=i)
        item = _sync_report(ctx, runs[-1], STEP_NOCHANGE)
        moved.append(int(item.get("files_transferred") or 0))  # type: ignore[call-overload]
        ran_bisync.append(bool(item.get("bisync")))
    if any(moved):
        ctx.problem(f"bluegrass, {STEP_NOCHANGE}: files transferred {moved}, expected none")
    note = f"{report.get('files_transferred', '?')} files transferred" + _bisync_note(
        [first_bisync]
    )
    nochange = median_row(BLUEGRASS, STEP_NOCHANGE, runs)
    nochange.note += f"; bisync ran in {sum(ran_bisync)} of {len(runs)} (skipped: unchanged)"
    return [measured_row(BLUEGRASS, STEP_FIRST, first, note), confirm_row, nochange]


def _rsync(ctx: Context, run_dir: Path, tree: Path, stats: data.TreeStats) -> list[Row]:
    absent = Sshd.missing()
    if absent:
        note = f"not installed: `apt-get install {' '.join(absent)}`"
        ctx.notes.append(f"rsync over OpenSSH was not measured: {note}")
        return [Row(RSYNC, STEP_FIRST, note=note), Row(RSYNC, STEP_NOCHANGE, note=note)]
    sshd = Sshd(run_dir / "sshd")
    try:
        sshd.start()
        src = run_dir / "rsync-tree"
        data.hardlink_copy(tree, src)
        data.warm_up(src)
        dest = run_dir / "rsync-dest"
        dest.mkdir()
        cmd = ["rsync", "-a", "-e", sshd.rsync_shell(), f"{src}/", f"{sshd.user}@127.0.0.1:{dest}/"]
        logs = run_dir / "logs"
        first = _timed(ctx, RSYNC, STEP_FIRST, cmd, logs)
        _check_copy(ctx, RSYNC, dest, stats, extra=0)
        runs = _nochange(ctx, RSYNC, cmd, logs)
    finally:
        sshd.stop()
    return [measured_row(RSYNC, STEP_FIRST, first), median_row(RSYNC, STEP_NOCHANGE, runs)]


def run(ctx: Context) -> list[Row]:
    tree, what = data.source_tree(ctx.cache, ctx.log, quick=ctx.quick, subset=ctx.subset)
    stats = data.tree_stats(tree)
    ctx.data_description.append(
        f"Tree: {what}, {stats.files:,} files, {stats.symlinks} symlink(s), "
        f"{stats.dirs:,} folders, {stats.bytes / 1e9:.2f} GB."
    )
    run_dir = ctx.run_dir("sync")
    cloud = Cloud(run_dir / "cloud", ctx.log)
    cloud.init()
    code = cloud.add_user(USER)
    for segment in (SEGMENT, PLAIN_SEGMENT):
        cloud.live_tree(USER, segment).mkdir(parents=True)
    rows: list[Row] = []
    try:
        cloud.start()
        cloud.settle([(USER, SEGMENT), (USER, PLAIN_SEGMENT)])
        laptop = _laptop(run_dir, code, tree)
        rows += _plain_rclone(ctx, run_dir, laptop, cloud, tree, stats)
        rows += _bluegrass(ctx, run_dir, laptop, cloud, stats)
    finally:
        cloud.stop()
    rows += _rsync(ctx, run_dir, tree, stats)
    add_ratios(rows, floor=FLOOR, compare_time_with={STEP_CONFIRM: STEP_NOCHANGE})
    steps, order = [STEP_FIRST, STEP_CONFIRM, STEP_NOCHANGE], [FLOOR, BLUEGRASS, RSYNC]
    rows.sort(key=lambda r: (steps.index(r.step), order.index(r.tool)))
    ctx.notes.append(
        "`bluegrass-cloud run` commits a segment as soon as it finds one not yet committed "
        "for the last `commit_at`, and checks every 30 s (a segment with an upload in "
        "progress waits until none has been seen for a minute, at most "
        "`upload_wait_minutes`). Here the folders exist (empty) before `run` starts, so that "
        "commit happens before the timed steps."
    )
    if not ctx.keep:
        _clean(run_dir)
    return rows


def _clean(run_dir: Path) -> None:
    """Remove the trees and their copies (gigabytes); keep the logs and configuration."""
    for big in (
        run_dir / "cloud" / "data" / "files",
        run_dir / "laptop" / SEGMENT,
        run_dir / "rclone-tree",
        run_dir / "rsync-tree",
        run_dir / "rsync-dest",
    ):
        if big.exists():
            shutil.rmtree(big)


def targets(ctx: Context, rows: list[Row]) -> list[Target]:
    def find(tool: str, step: str) -> Row | None:
        return next((r for r in rows if r.tool == tool and r.step == step), None)

    result = []
    for step, limit in ((STEP_FIRST, TARGET_FIRST), (STEP_NOCHANGE, TARGET_NOCHANGE)):
        bg, floor = find(BLUEGRASS, step), find(FLOOR, step)
        goal = f"{step} ≤ {limit}× plain rclone"
        if bg and floor and bg.seconds is not None and floor.seconds:
            r = bg.seconds / floor.seconds
            measured = f"{bg.seconds:.2f} s vs {floor.seconds:.2f} s = {r:.2f}×"
            result.append(Target(goal, measured, r <= limit))
        else:
            result.append(Target(goal, "not measured", None))
    return result
