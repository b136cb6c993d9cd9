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
import time
from pathlib import Path

from bluegrass.core import rclone, syncmeta

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
# The first sync runs this many times, each into folders of its own (SEGMENT-1, ...; the
# no-change steps use the last), rclone's and bluegrass's in turn: on this disk a first sync
# of the same tree took from 61 to 93 s from one run to the next, far more than the margin.
FIRST_RUNS = 3
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
        "One cloud, `bluegrass-cloud run` on free loopback ports, with user `bench`; its "
        f"folders (`linux-1` … `linux-{FIRST_RUNS}` for the segments, `rclone-plain-1` … for "
        "plain rclone) are made before it starts and its scheduler's catching-up commit of "
        "them (empty) is waited for, so no daily commit runs during a timed step (see Notes).",
        "bluegrass: a laptop with its own HOME runs `bluegrass enroll CODE` (the code from "
        "`user add bench --json`), `segment add linux-N TREE-N` for each, then `bluegrass "
        "sync linux-N --json`, timed: the first sync (the check file, then `rclone bisync "
        "--resync`) and then (on the last segment) no-change syncs. The first no-change run "
        "after a sync that moved files runs bisync in full (with its safety flags) and keeps "
        "the state of both sides taken before it; the runs after it walk the laptop's "
        "folder, ask the cloud for its folder's state over HTTP (both at once) and skip "
        "bisync when neither changed (docs/decisions.md 56). Both are shown: the confirming "
        "run once, then the no-change step as a daemon runs it between changes. The notes "
        "give rclone bisync's own elapsed time, from the JSON log the laptop keeps of the run "
        "(`STATE/segments/linux-N/last.log`): the rest is what bluegrass adds around it "
        "(start-up, the scan for unsyncable files, both sides' states, and around every bisync "
        "the metadata sidecar: describing the folder, uploading it when it changed, fetching "
        "the other devices' and putting their bits and times back; decision 59). The first "
        "sync's note gives the sidecar's size and the time to describe and compress it alone.",
        "rclone: `rclone sync TREE bluegrass:rclone-plain-N --links --create-empty-src-dirs` "
        "with the laptop's own `rclone.conf` (same endpoint, same device credentials, same "
        "rclone binary from the venv); `--links` and `--create-empty-src-dirs` because the "
        "laptop client passes them too, so both move the same files.",
        "rsync: `rsync -a TREE/ USER@127.0.0.1:DEST/` over `ssh` to a throwaway `sshd` on a "
        "free loopback port (its own host key, one client key, no PAM), the destination on the "
        "same disk as the cloud's folders.",
        "Each tool syncs its own hard-linked copy (`cp -al`) of the cached tree, read once in "
        "full first (warm page cache), with `sync` before each timed step. The first sync of "
        f"rclone and of bluegrass runs {FIRST_RUNS} times, in turn (rclone 1, bluegrass 1, "
        "rclone 2, …), each into new folders: this disk's speed drifts from one minute to "
        "the next by more than the target's margin. rsync's first sync runs once. The "
        f"no-change step runs {NOCHANGE_RUNS} times. Repeated steps give the median time "
        "and the largest memory. After each first sync the destination's file count is "
        "checked against the tree.",
        "Time includes process start-up and the SSH login. Peak RSS is the client's process "
        "tree only (bluegrass and its rclone; rclone; rsync and ssh), sampled every 20 ms; "
        "the servers' memory is not counted for anyone.",
    ]


def _laptop(run_dir: Path, code: str, tree: Path, segments: list[str]) -> Laptop:
    laptop = Laptop(run_dir / "laptop")
    laptop.run("enroll", code)
    for segment in segments:
        folder = laptop.home / segment
        data.hardlink_copy(tree, folder)
        laptop.run("segment", "add", segment, str(folder))
    return laptop


def _sync_report(ctx: Context, m: Measurement, step: str, segment: str) -> dict[str, object]:
    """The segment's entry of `sync --json`; a problem when it is not `ok`."""
    try:
        report = json.loads(m.output())
        item = next(s for s in report["segments"] if s["segment"] == segment)
    except (json.JSONDecodeError, KeyError, StopIteration, TypeError) as exc:
        ctx.problem(f"bluegrass, {step}: no result for {segment} in `sync --json` ({exc})")
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


def _names(base: str) -> list[str]:
    return [f"{base}-{i + 1}" for i in range(FIRST_RUNS)]


def _rclone_command(laptop: Laptop, src: Path, folder: str) -> list[str]:
    return [
        str(rclone.binary()),
        "--config",
        str(laptop.rclone_config),
        "sync",
        str(src),
        f"bluegrass:{folder}",
        *PLAIN_FLAGS,
    ]


def _first_syncs(
    ctx: Context, run_dir: Path, laptop: Laptop, cloud: Cloud, src: Path, stats: data.TreeStats
) -> list[Row]:
    """Each tool's first sync FIRST_RUNS times, in turn, each into folders of its own."""
    logs = run_dir / "logs"
    plain_runs, ours, bisync, moved = [], [], [], []
    for i, (plain, segment) in enumerate(zip(_names(PLAIN_SEGMENT), _names(SEGMENT), strict=True)):
        step = f"{STEP_FIRST} {i + 1} of {FIRST_RUNS}"
        cmd = _rclone_command(laptop, src, plain)
        plain_runs.append(_timed(ctx, FLOOR, step, cmd, logs, env=laptop.env, cwd=laptop.home))
        _check_copy(ctx, FLOOR, cloud.live_tree(USER, plain), stats, extra=0)
        cmd = laptop.command("sync", segment, "--json")
        ours.append(_timed(ctx, BLUEGRASS, step, cmd, logs, env=laptop.env, cwd=laptop.home))
        report = _sync_report(ctx, ours[-1], STEP_FIRST, segment)
        moved.append(report.get("files_transferred", "?"))
        bisync.append(_bisync_seconds(laptop, segment))
        # The check file .bluegrass-check and the laptop's metadata sidecar are two more
        # files on the cloud.
        _check_copy(ctx, BLUEGRASS, cloud.live_tree(USER, segment), stats, extra=2)
    first = median_row(BLUEGRASS, STEP_FIRST, ours)
    first.note += f"; files transferred {moved}" + _bisync_note(bisync)
    first.note += _sidecar_note(laptop.home / _names(SEGMENT)[-1])
    return [median_row(FLOOR, STEP_FIRST, plain_runs), first]


def _sidecar_note(folder: Path) -> str:
    """What carrying the bits and times costs (decision 59): describing the folder and
    compressing the records, which every sync that runs bisync does, timed here alone."""
    started = time.perf_counter()
    records = syncmeta.describe(folder, {}, time.time_ns())
    blob = syncmeta.serialize(records)
    took = time.perf_counter() - started
    return (
        f"; metadata sidecar: {len(records):,} entries, {len(blob) / 1e6:.1f} MB compressed, "
        f"described and compressed in {took:.2f} s"
    )


def _plain_nochange(ctx: Context, run_dir: Path, laptop: Laptop, src: Path) -> list[Row]:
    cmd = _rclone_command(laptop, src, _names(PLAIN_SEGMENT)[-1])
    runs = _nochange(ctx, FLOOR, cmd, run_dir / "logs", env=laptop.env, cwd=laptop.home)
    return [median_row(FLOOR, STEP_NOCHANGE, runs)]


def _bisync_seconds(laptop: Laptop, segment: str) -> float | None:
    """rclone bisync's own elapsed time in the last sync, from the JSON log the laptop keeps
    of it (STATE/segments/<segment>/last.log): what bluegrass adds is the rest."""
    log = laptop.state_dir / "segments" / segment / "last.log"
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


def _bluegrass_nochange(ctx: Context, run_dir: Path, laptop: Laptop) -> list[Row]:
    segment = _names(SEGMENT)[-1]
    cmd = laptop.command("sync", segment, "--json")
    logs = run_dir / "logs"
    confirm = _timed(
        ctx, BLUEGRASS, "confirming no-change sync", cmd, logs, env=laptop.env, cwd=laptop.home
    )
    item = _sync_report(ctx, confirm, STEP_CONFIRM, segment)
    if not item.get("bisync") or item.get("files_transferred"):
        ctx.problem(f"bluegrass, {STEP_CONFIRM}: expected a full bisync moving nothing: {item}")
    elapsed = _bisync_note([_bisync_seconds(laptop, segment)]).lstrip("; ")
    confirm_row = measured_row(BLUEGRASS, STEP_CONFIRM, confirm, elapsed)
    runs, ran_bisync, moved = [], [], []
    for i in range(NOCHANGE_RUNS):
        runs += _nochange(ctx, BLUEGRASS, cmd, logs, env=laptop.env, cwd=laptop.home, runs=1, at=i)
        item = _sync_report(ctx, runs[-1], STEP_NOCHANGE, segment)
        moved.append(int(item.get("files_transferred") or 0))  # type: ignore[call-overload]
        ran_bisync.append(bool(item.get("bisync")))
    if any(moved):
        ctx.problem(f"bluegrass, {STEP_NOCHANGE}: files transferred {moved}, expected none")
    nochange = median_row(BLUEGRASS, STEP_NOCHANGE, runs)
    nochange.note += f"; bisync ran in {sum(ran_bisync)} of {len(runs)} (skipped: unchanged)"
    return [confirm_row, nochange]


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
    folders = _names(SEGMENT) + _names(PLAIN_SEGMENT)
    for folder in folders:
        cloud.live_tree(USER, folder).mkdir(parents=True)
    rows: list[Row] = []
    try:
        cloud.start()
        cloud.settle([(USER, folder) for folder in folders])
        laptop = _laptop(run_dir, code, tree, _names(SEGMENT))
        src = run_dir / "rclone-tree"
        data.hardlink_copy(tree, src)
        data.warm_up(src)  # the laptop's folders are hard links to the same files
        rows += _first_syncs(ctx, run_dir, laptop, cloud, src, stats)
        rows += _plain_nochange(ctx, run_dir, laptop, src)
        rows += _bluegrass_nochange(ctx, run_dir, laptop)
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
        *(run_dir / "laptop" / segment for segment in _names(SEGMENT)),
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
