"""Scenario "snapshot": the cloud's daily commit against plain git, restic and borg.

For each tool, on the same tree: the first snapshot, a snapshot with nothing changed, a
snapshot after 1% of the files changed, then packing/gc and the repository's size. Then, on
its own, one large random file, for time and above all peak memory.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from bench.lib import data
from bench.lib.context import Context
from bench.lib.measure import Measurement
from bench.lib.report import Row, Target, add_ratios, median_row, megabytes
from bench.lib.tools import Bluegrass, Restic, Snapshot, Tool

TITLE = "Snapshot: first, no-change and 1%-changed snapshots, repository size, a large file"

MiB = 1024 * 1024
# Random "media" added to the tree: sizes either side of Bluegrass's core.bigFileThreshold
# (32 MiB; above it a blob is streamed into a pack instead of held in memory).
FULL_MEDIA = {
    "photo-1.jpg": 4 * MiB,
    "photo-2.jpg": 6 * MiB,
    "photo-3.jpg": 9 * MiB,
    "clip-1.mp4": 48 * MiB,
    "clip-2.mp4": 96 * MiB,
}
QUICK_MEDIA = {"photo-1.jpg": 1 * MiB, "clip-1.mp4": 3 * MiB}
FULL_LARGE = 2048 * MiB
QUICK_LARGE = 64 * MiB  # still above the 32 MiB threshold, so the streaming path is exercised
QUICK_FILES = 2000
MEDIA_FOLDER = "bench-media"
CHANGE_EVERY = 100  # every 100th file: 1%
NOCHANGE_RUNS = 3
FIRST_RUNS = 3

STEP_FIRST = "first snapshot"
STEP_NOCHANGE = "no-change snapshot"
STEP_CHANGED = "1% changed snapshot"
STEP_MAINTAIN = "maintain"
STEP_SIZE = "gc → repository size"

# Seconds a freshly created or changed tree is left alone before a snapshot: more than
# Bluegrass's 2 s racy window and git's 1 s timestamp granularity (see data.settle).
SETTLE = 3.0

TARGET_FIRST_RATIO = 1.15
TARGET_NOCHANGE_SECONDS = 0.5
TARGET_LARGE_RSS = 100 * 1_000_000
# Shown in targets and rows: the segment under test in the large-file case.
LARGE_SEGMENT = "large"


def large_step(ctx: Context) -> str:
    size = QUICK_LARGE if ctx.quick else FULL_LARGE
    return f"{size // MiB} MiB file" if size < 1024 * MiB else f"{size // (1024 * MiB)} GiB file"


def describe_method(ctx: Context) -> list[str]:
    return [
        "Each tool backs up its own hard-linked copy (`cp -al`) of the cached tree, one tool at "
        "a time. Before its first snapshot the tree is read once in full, so every tool starts "
        "with the same warm page cache (dropping the cache needs root and is unreliable); "
        "`sync` runs before every timed step, so no tool pays for another's dirty pages; and a "
        f"new tree is left alone {SETTLE:.0f} s before its first snapshot, so no tool's stat "
        "cache distrusts files that were linked a moment ago (hard-linking changes their "
        "ctime; a daily run finds files hours old) and the no-change step measures the "
        "no-change path.",
        f"1% changed: every {CHANGE_EVERY}th regular file in bytewise-sorted path order gets "
        f"{len(data.CHANGE_SUFFIX)} bytes appended, written as a new file renamed over the old "
        "(as rclone and editors replace files; it also keeps the hard-linked cache pristine).",
        "Floor: plain git with the repository outside the tree (`GIT_DIR`/`GIT_WORK_TREE`, no "
        "user or system config, `gc.auto=0` so no detached gc runs between steps): `git add -A "
        "--force` (the kernel's `.gitignore` ignores everything), then `git commit` when "
        "`git diff-index --cached HEAD` shows a change. "
        "restic: `restic backup` (the cache is not counted in the size). borg: `borg init -e "
        "none`, `borg create --compression lz4`. bluegrass: `bluegrass-cloud commit --user "
        "bench --segment linux --json` on `DATA/files/bench/linux/`, then `bluegrass-cloud "
        "maintain` (its own row).",
        "Size: after `git gc` (floor, and bluegrass after maintain), `borg compact`, nothing "
        "for restic (it packs as it goes); the time on that row is the gc's own. The size is "
        "the apparent size of the repository folder, which "
        "for bluegrass includes its working files (stat cache, check log) and for the floor "
        "the index.",
        "Time includes process start-up. Peak RSS is summed over the whole process tree, "
        "sampled every 20 ms; peak anon RSS leaves out mapped files (see bench/lib/measure.py). "
        "A multi-command step (floor: add, diff-index, commit) adds the times and takes the "
        f"largest peak. The first snapshot runs {FIRST_RUNS} times, each from no repository "
        "(removed, with the tool's caches, and made again untimed; the tree stays), and the "
        f"no-change step {NOCHANGE_RUNS} times: the time is the median, the peak memory the "
        "largest.",
    ]


def _prepare(ctx: Context) -> tuple[list[tuple[Path, str]], data.TreeStats, Path]:
    """(what to hard-link where in the tree, stats of the tree, the large file)."""
    if ctx.quick:
        base = data.quick_tree(ctx.cache, ctx.log, files=QUICK_FILES)
        media = data.media_files(ctx.cache, QUICK_MEDIA, ctx.log, name="media-quick")
        large_size = QUICK_LARGE
        what = f"a generated tree ({QUICK_FILES} files, --quick)"
    else:
        base = data.linux_tree(ctx.cache, ctx.log)
        media = data.media_files(ctx.cache, FULL_MEDIA, ctx.log, name="media")
        large_size = FULL_LARGE
        what = f"the Linux 6.1 source tree (Debian `{data.LINUX_PACKAGE}`)"
    large = data.media_files(
        ctx.cache, {"large.bin": large_size}, ctx.log, name=f"large-{large_size // MiB}m"
    )
    base_stats = data.tree_stats(base)
    media_stats = data.tree_stats(media)
    stats = data.TreeStats(
        base_stats.files + media_stats.files,
        base_stats.symlinks + media_stats.symlinks,
        base_stats.dirs + media_stats.dirs + 1,
        base_stats.bytes + media_stats.bytes,
    )
    ctx.data_description += [
        f"Tree: {what}, {base_stats.files:,} files, {base_stats.symlinks} symlink(s), "
        f"{base_stats.bytes / 1e9:.2f} GB; plus `{MEDIA_FOLDER}/` with {media_stats.files} "
        f"random (incompressible) files of {media_stats.bytes / 1e6:.0f} MB. "
        f"In all {stats.entries:,} files and symlinks, {stats.bytes / 1e9:.2f} GB.",
        f"Large file: one random file of {large_size / 1e9:.2f} GB ({large_step(ctx)}) in a "
        "folder of its own.",
    ]
    return [(base, ""), (media, MEDIA_FOLDER)], stats, large / "large.bin"


def _row(tool: Tool, step: str, m: Measurement, note: str = "") -> Row:
    return Row(
        tool=tool.name,
        step=step,
        seconds=m.seconds,
        peak_rss=m.peak_rss,
        peak_anon=m.peak_anon,
        note=note,
    )


def _check(
    ctx: Context,
    tool: Tool,
    step: str,
    snap: Snapshot,
    *,
    committed: bool,
    entries: int,
    changed: int | None = None,
) -> None:
    """Fail the run when a tool did not store what it was given: such a time means nothing."""
    for note in snap.notes:
        ctx.notes.append(f"{tool.name}, {step}: {note}")
    if snap.committed is not None and snap.committed != committed:
        ctx.problem(
            f"{tool.name}, {step}: expected {'a' if committed else 'no'} commit, "
            f"got {'one' if snap.committed else 'none'}"
        )
    if snap.stored_entries is not None and snap.stored_entries != entries:
        ctx.problem(
            f"{tool.name}, {step}: snapshot holds {snap.stored_entries} files and symlinks, "
            f"the tree has {entries}"
        )
    if changed is not None and snap.changed is not None and snap.changed != changed:
        ctx.problem(
            f"{tool.name}, {step}: reported {snap.changed} changed files, expected {changed}"
        )


def _snapshot(ctx: Context, tool: Tool, step: str) -> Snapshot:
    data.flush()
    ctx.log(f"{tool.name}: {step}")
    snap = tool.snapshot()
    ctx.log(
        f"{tool.name}: {step}: {snap.measurement.seconds:.2f} s, "
        f"peak RSS {megabytes(snap.measurement.peak_rss)} MB"
    )
    return snap


def _place_tree(ctx: Context, tool: Tool, sources: list[tuple[Path, str]]) -> float:
    """Hard-link the tree into the tool's place; returns when (monotonic) it was made."""
    tool.before_tree()
    ctx.log(f"{tool.name}: hard-linking the tree into {tool.tree}")
    for src, rel in sources:
        data.hardlink_copy(src, tool.tree / rel if rel else tool.tree)
    made = time.monotonic()
    tool.setup()
    ctx.log(f"{tool.name}: warming the page cache")
    data.warm_up(tool.tree)
    data.settle(made, SETTLE)
    return made


def _tree_case(
    ctx: Context,
    cls: type[Tool],
    workspace: Path,
    sources: list[tuple[Path, str]],
    stats: data.TreeStats,
) -> list[Row]:
    tool = cls(workspace, "linux")
    _place_tree(ctx, tool, sources)
    rows: list[Row] = []

    # A first snapshot writes the whole tree: how fast the disk takes it varies from one run
    # to the next by more than the target's margin, so it is taken FIRST_RUNS times from no
    # repository (the tree stays), and the median counts. The last repository goes on.
    firsts = []
    for i in range(FIRST_RUNS):
        if i:
            tool.reset_repository()
        snap = _snapshot(ctx, tool, STEP_FIRST)
        _check(ctx, tool, STEP_FIRST, snap, committed=True, entries=stats.entries)
        firsts.append(snap.measurement)
    rows.append(median_row(tool.name, STEP_FIRST, firsts))

    # Short enough to be noisy against a 0.5 s target: the median of a few runs.
    runs = []
    for _ in range(NOCHANGE_RUNS):
        snap = _snapshot(ctx, tool, STEP_NOCHANGE)
        _check(ctx, tool, STEP_NOCHANGE, snap, committed=False, entries=stats.entries)
        runs.append(snap.measurement)
    rows.append(median_row(tool.name, STEP_NOCHANGE, runs))

    # No settling after the change: the changed files are read in this step whatever their
    # age; their recent ctimes only matter to a later no-change snapshot, which is not taken.
    changed = data.modify_every_nth(tool.tree, CHANGE_EVERY)
    snap = _snapshot(ctx, tool, STEP_CHANGED)
    _check(
        ctx, tool, STEP_CHANGED, snap, committed=True, entries=stats.entries, changed=len(changed)
    )
    rows.append(_row(tool, STEP_CHANGED, snap.measurement, note=f"{len(changed)} files changed"))

    for step, m in tool.after_snapshots():
        note = "× floor: against the floor's `git gc`" if step == STEP_MAINTAIN else ""
        rows.append(_row(tool, step, m, note=note))
    data.flush()
    gc = tool.gc()
    size = tool.repo_size()
    row = _row(tool, STEP_SIZE, gc) if gc else Row(tool=tool.name, step=STEP_SIZE)
    row.size = size
    if isinstance(tool, Bluegrass):
        row.note = (
            f"git gc after maintain; incl. {megabytes(tool.state_size())} MB of working files "
            "(stat cache)"
        )
    elif isinstance(tool, Restic):
        row.note = "no gc step; restic packs as it goes"
    rows.append(row)
    ctx.log(f"{tool.name}: repository {size / 1e6:.0f} MB")
    _clean(ctx, tool)
    return rows


def _large_case(ctx: Context, cls: type[Tool], workspace: Path, large: Path) -> Row:
    tool = cls(workspace, LARGE_SEGMENT)
    tool.before_tree()
    tool.tree.mkdir(parents=True)
    os.link(large, tool.tree / large.name)  # a hard link: no 2 GB copy
    tool.setup()
    # One snapshot only, so no settling: nothing later depends on the stat cache.
    data.warm_up(tool.tree)
    step = large_step(ctx)
    snap = _snapshot(ctx, tool, step)
    _check(ctx, tool, step, snap, committed=True, entries=1)
    _clean(ctx, tool)
    return _row(tool, step, snap.measurement)


def _clean(ctx: Context, tool: Tool) -> None:
    """Remove the tool's trees and repositories (gigabytes), keeping its logs."""
    if ctx.keep:
        return
    for child in tool.workspace.iterdir():
        if child != tool.logs:
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()


def run(ctx: Context) -> list[Row]:
    sources, stats, large = _prepare(ctx)
    run_dir = ctx.run_dir("snapshot")
    rows: list[Row] = []
    for cls in ctx.tools:
        rows += _tree_case(ctx, cls, run_dir / cls.name, sources, stats)
    for cls in ctx.tools:
        rows.append(_large_case(ctx, cls, run_dir / f"{cls.name}-{LARGE_SEGMENT}", large))
    # maintain is compared with the floor's git gc (both pack what the snapshots left
    # loose); the gc step's own time is not comparable (for bluegrass it follows maintain,
    # restic has none), only the sizes are.
    add_ratios(rows, compare_time_with={STEP_MAINTAIN: STEP_SIZE}, no_time_ratio={STEP_SIZE})
    # Grouped by step, tools in a fixed order within each, so comparisons sit together.
    steps = [STEP_FIRST, STEP_NOCHANGE, STEP_CHANGED, STEP_MAINTAIN, STEP_SIZE, large_step(ctx)]
    order = [t.name for t in ctx.tools]
    rows.sort(
        key=lambda r: (steps.index(r.step) if r.step in steps else len(steps), order.index(r.tool))
    )
    return rows


def targets(ctx: Context, rows: list[Row]) -> list[Target]:
    def find(tool: str, step: str) -> Row | None:
        return next((r for r in rows if r.tool == tool and r.step == step), None)

    result: list[Target] = []
    bg, floor = find("bluegrass", STEP_FIRST), find("floor", STEP_FIRST)
    goal = f"first snapshot ≤ {TARGET_FIRST_RATIO:.2f}× plain git"
    if bg and floor and bg.seconds is not None and floor.seconds:
        r = bg.seconds / floor.seconds
        result.append(
            Target(
                goal,
                f"{bg.seconds:.2f} s vs {floor.seconds:.2f} s = {r:.2f}×",
                r <= TARGET_FIRST_RATIO,
            )
        )
    else:
        result.append(Target(goal, "bluegrass or floor not run", None))

    bg = find("bluegrass", STEP_NOCHANGE)
    tree = f"{QUICK_FILES}-file tree, --quick" if ctx.quick else "78k-file tree"
    goal = f"no-change snapshot ({tree}) ≤ {TARGET_NOCHANGE_SECONDS} s"
    if bg and bg.seconds is not None:
        result.append(Target(goal, f"{bg.seconds:.2f} s", bg.seconds <= TARGET_NOCHANGE_SECONDS))
    else:
        result.append(Target(goal, "bluegrass not run", None))

    step = large_step(ctx)
    bg = find("bluegrass", step)
    goal = f"peak RSS committing a {step} ≤ {TARGET_LARGE_RSS / 1e6:.0f} MB"
    if bg and bg.peak_rss is not None:
        anon = f" (anon {megabytes(bg.peak_anon)} MB)" if bg.peak_anon is not None else ""
        result.append(
            Target(goal, f"{megabytes(bg.peak_rss)} MB{anon}", bg.peak_rss <= TARGET_LARGE_RSS)
        )
    else:
        result.append(Target(goal, "bluegrass not run", None))

    bg, restic = find("bluegrass", STEP_SIZE), find("restic", STEP_SIZE)
    goal = "repository size after gc ≤ restic's"
    if bg and restic and bg.size is not None and restic.size:
        r = bg.size / restic.size
        measured = f"{megabytes(bg.size)} MB vs {megabytes(restic.size)} MB = {r:.2f}×"
        result.append(Target(goal, measured, bg.size <= restic.size))
    else:
        result.append(Target(goal, "bluegrass or restic not run", None))
    return result
