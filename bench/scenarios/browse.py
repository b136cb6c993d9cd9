"""Scenario "browse": the web panel over real HTTP, on histories built with the real store.

The panel with its reference backend under gunicorn (as tests/panel/test_server.py serves
it), signed in through its first-run setup. Measured: request latency (p50/p95) of a
10,000-entry folder at an old snapshot and of a file's history over 1,000 snapshots, before
and after `Repository.maintain()`; and the throughput of a 1 GB folder downloaded as zip,
against `git archive --format=zip -0` of the same tree into a file.
"""

from __future__ import annotations

import http.client
import os
import shutil
import statistics
import time
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from bluegrass.core.store import Repository, snapshot

from bench.lib import data
from bench.lib.context import Context
from bench.lib.measure import CommandFailed, TreeSampler, measure, run_quiet
from bench.lib.report import Row, Target, megabytes, project_revision
from bench.lib.servers import Panel
from bench.lib.tools import clean_env, git_env

TITLE = (
    "Browse: the web panel's folder listing at an old snapshot and a file's history (request "
    "latency), and a 1 GB folder as a zip download (throughput), over real HTTP"
)
USES_TOOLS = False
COLUMNS = [
    "tool",
    "step",
    "p50",
    "p95",
    "seconds",
    "ratio",
    "rate",
    "peak_rss",
    "peak_anon",
    "note",
]
HEADERS = {"ratio": "× git"}

USER = "bench"
DOCS = "docs"  # the big folder and the media folder
JOURNAL = "journal"  # the file with a long history
BIG = "big"
MEDIA = "media"
JOURNAL_FILE = "journal.txt"
FLOOR = "git"
PANEL = "bluegrass"
MiB = 1024 * 1024


@dataclass(frozen=True)
class Sizes:
    entries: int  # in the big folder
    commits: int  # of the journal segment
    every: int  # the journal file changes in every n-th commit
    media: dict[str, int]  # the "1 GB" folder's files
    requests: int  # per latency measurement


FULL = Sizes(10_000, 1_000, 5, {f"clip-{i:02d}.mp4": 64 * MiB for i in range(16)}, 50)
QUICK = Sizes(500, 100, 5, {f"clip-{i:02d}.mp4": 16 * MiB for i in range(2)}, 10)
TARGET_LISTING = 0.150
TARGET_HISTORY = 0.300
TARGET_ZIP = 0.8


def sizes(ctx: Context) -> Sizes:
    return QUICK if ctx.quick else FULL


def step_listing(ctx: Context, maintained: bool) -> str:
    s = sizes(ctx)
    return f"{s.entries:,}-entry folder, old snapshot, {_state(maintained)}"


def step_history(ctx: Context, maintained: bool) -> str:
    s = sizes(ctx)
    return f"file history over {s.commits:,} snapshots, {_state(maintained)}"


def step_zip(ctx: Context) -> str:
    total = sum(sizes(ctx).media.values())
    return f"{total / 1e9:.2f} GB folder as zip"


def _state(maintained: bool) -> str:
    return "after maintain" if maintained else "before maintain"


def versions(ctx: Context) -> dict[str, str]:
    git = run_quiet(["git", "--version"]).stdout.decode().strip().removeprefix("git version ")
    curl = run_quiet(["curl", "--version"]).stdout.decode().split()[1]
    return {"bluegrass": project_revision(("core", "panel")), "git": git, "curl": curl}


def describe_method(ctx: Context) -> list[str]:
    s = sizes(ctx)
    return [
        "Data, built with `bluegrass.core.store.snapshot(..., when=...)` in a data root of the "
        f"panel's reference backend: segment `{DOCS}` with a folder `{BIG}/` of {s.entries:,} "
        f"small files and a folder `{MEDIA}/` of {len(s.media)} random files, in 3 dated "
        f"snapshots (the 2nd changes, adds and deletes 1% of `{BIG}/`); segment `{JOURNAL}` "
        f"with {s.commits:,} dated snapshots of a small tree, each changing one file, and "
        f"`{JOURNAL_FILE}` changed in every {s.every}th, so its history page (200 entries) "
        "walks every snapshot.",
        "Served by gunicorn (2 gthread workers, 4 threads each) with "
        "`bluegrass.panel.app:create_app_from_env()`, signed in through first-run setup. "
        f"Latency: {s.requests} sequential GETs of the page, each on a new connection (so both "
        "workers serve), timed from sending to the last byte of the body; p50 and p95 over "
        "all of them, the first one (cold caches) included and also given in the note. "
        f"Listing: `/s/{USER}/{DOCS}/tree/{BIG}?at=<first snapshot>`; history: "
        f"`/s/{USER}/{JOURNAL}/history/{JOURNAL_FILE}`.",
        "git rows, the floor: the same answer from plain git as a process, "
        f"{s.requests} runs: `git ls-tree -l <first snapshot>:files/{BIG}` (with sizes, as "
        "the page shows them; before maintain that reads every blob's loose header), and "
        "`git log "
        "--first-parent --raw --max-count=201 main -- files/journal.txt` (what the history "
        "page asks git). × git compares p95 with p95.",
        "Before maintain: the repositories as the snapshots left them; then "
        "`Repository.maintain()` on both (timed; packs loose objects, writes the commit-graph "
        "with changed-path Bloom filters) and a fresh gunicorn, and the same again.",
        f"Zip: `curl -o FILE` of `/s/{USER}/{DOCS}/archive/{MEDIA}?format=zip` after maintain, "
        f"against `git archive --format=zip -0 -o FILE <head>:files/{MEDIA}`; MB/s is the "
        "folder's bytes over the time, the time includes process start-up; the zip is opened "
        "and its CRCs checked after. Peak RSS of bluegrass rows is the gunicorn process tree "
        "(sampled every 20 ms) during the step; of `git archive`, its own (none for the "
        "git latency rows: a process of a few milliseconds is gone before it is sampled). "
        "RSS counts the pages of a pack git maps in (`git cat-file` streaming a 1 GB pack "
        "shows ~1 GB of RSS that is page cache); anon RSS is the private memory.",
    ]


def _write(path: Path, text: str, when: datetime) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, (when.timestamp(), when.timestamp()))


def _snap(repo: Repository, folder: Path, when: datetime) -> str:
    result = snapshot(repo, folder, when=when)
    if not result.committed or result.commit is None:
        raise CommandFailed(f"snapshot of {folder} at {when} committed nothing")
    return result.commit


def _build_docs(ctx: Context, root: Path, start: datetime) -> tuple[str, str, int]:
    """(first snapshot, newest snapshot, bytes of the media folder)."""
    s = sizes(ctx)
    live = root / "files" / USER / DOCS
    big = live / BIG
    big.mkdir(parents=True)
    for i in range(s.entries):
        _write(big / f"note-{i:05d}.txt", f"note {i}\n" + "lorem ipsum " * (i % 40), start)
    media = data.media_files(ctx.cache, s.media, ctx.log, name=f"browse-media-{len(s.media)}")
    (live / MEDIA).mkdir()
    for name in s.media:
        (live / MEDIA / name).hardlink_to(media / name)
    _write(live / "README.txt", "first\n", start)
    repo = Repository.init(root / "repos" / USER / f"{DOCS}.git")
    begun = time.monotonic()
    old = _snap(repo, live, start)
    ctx.log(f"browse: {DOCS}: first snapshot in {time.monotonic() - begun:.1f} s")
    step = max(1, s.entries // 100)
    day = start + timedelta(days=1)
    for i in range(0, s.entries, step):
        _write(big / f"note-{i:05d}.txt", f"changed {i}\n", day)
        (big / f"note-{i + 1:05d}.txt").unlink()
        _write(big / f"added-{i:05d}.txt", f"added {i}\n", day)
    _snap(repo, live, day)
    later = start + timedelta(days=2)
    _write(live / "README.txt", "second\n", later)
    new = _snap(repo, live, later)
    return old, new, sum(s.media.values())


def _build_journal(ctx: Context, root: Path, start: datetime) -> None:
    s = sizes(ctx)
    live = root / "files" / USER / JOURNAL
    for i in range(40):
        _write(live / "notes" / f"page-{i:02d}.txt", f"page {i}\n", start)
    _write(live / JOURNAL_FILE, "day 0\n", start)
    repo = Repository.init(root / "repos" / USER / f"{JOURNAL}.git")
    begun = time.monotonic()
    for n in range(s.commits):
        when = start + timedelta(hours=n)
        if n:
            _write(live / "notes" / f"page-{n % 40:02d}.txt", f"page {n % 40}, edit {n}\n", when)
            if n % s.every == 0:
                _write(live / JOURNAL_FILE, f"day {n}\n" * (1 + n % 7), when)
        _snap(repo, live, when)
        if n and n % 200 == 0:
            ctx.log(f"browse: {JOURNAL}: {n} snapshots in {time.monotonic() - begun:.0f} s")
    ctx.log(f"browse: {JOURNAL}: {s.commits} snapshots in {time.monotonic() - begun:.0f} s")


def _get(base: str, path: str, cookie: str) -> tuple[float, int, bytes]:
    """(seconds, status, body) of one GET on a new connection."""
    parts = urlsplit(base)
    start = time.perf_counter()
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=120)
    try:
        conn.request("GET", path, headers={"Cookie": cookie})
        resp = conn.getresponse()
        body = resp.read()
        status = resp.status
    finally:
        conn.close()
    return time.perf_counter() - start, status, body


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered) + 0.5) - 1))]


def _latency(
    ctx: Context, panel: Panel, sampler: TreeSampler, step: str, path: str, must: bytes
) -> Row:
    s = sizes(ctx)
    cookie = panel.cookie_header()
    times = []
    ctx.log(f"{PANEL}: {step}: {s.requests} requests")
    since = time.monotonic()
    size = 0
    for i in range(s.requests):
        seconds, status, body = _get(panel.base_url, path, cookie)
        if status != 200:
            raise CommandFailed(f"GET {path} answered {status}")
        # The page is the one asked for (not a sign-in page), every time.
        if must not in body:
            ctx.problem(f"{PANEL}, {step}: request {i + 1}: the page has no {must!r}")
        size = len(body)
        times.append(seconds)
    window = sampler.window(since)
    row = Row(
        PANEL,
        step,
        p50=statistics.median(times),
        p95=_percentile(times, 0.95),
        peak_rss=window.peak_rss,
        peak_anon=window.peak_anon,
        note=f"first (cold) {times[0] * 1000:.0f} ms, slowest {max(times) * 1000:.0f} ms; "
        f"page {size / 1e3:.0f} kB",
    )
    ctx.log(f"{PANEL}: {step}: p50 {row.p50 * 1000:.0f} ms, p95 {row.p95 * 1000:.0f} ms")  # type: ignore[operator]
    return row


def _git_latency(ctx: Context, step: str, cmd: list[str], repo: Path, logs: Path) -> Row:
    s = sizes(ctx)
    runs = [
        measure(
            cmd,
            log_dir=logs,
            name=f"git-{i}",
            env=git_env(repo),
            cwd=repo,
            timeout=ctx.step_timeout,
        )
        for i in range(s.requests)
    ]
    times = [m.seconds for m in runs]
    return Row(
        FLOOR,
        step,
        p50=statistics.median(times),
        p95=_percentile(times, 0.95),
        # No memory: a git that lives a few milliseconds is mostly gone before a sample.
        note=f"{s.requests} runs",
    )


def _measure_pages(ctx: Context, root: Path, old: str, maintained: bool, logs: Path) -> list[Row]:
    rows = []
    docs = root / "repos" / USER / f"{DOCS}.git"
    journal = root / "repos" / USER / f"{JOURNAL}.git"
    listing, history = step_listing(ctx, maintained), step_history(ctx, maintained)
    rows.append(
        _git_latency(ctx, listing, ["git", "ls-tree", "-l", f"{old}:files/{BIG}"], docs, logs)
    )
    log_cmd = [
        "git",
        "--literal-pathspecs",
        "log",
        "--first-parent",
        "--no-renames",
        "-z",
        "--format=%H%x1f%cI%x1f%P%x1f%s",
        "--max-count=201",
        "--raw",
        "--no-abbrev",
        "main",
        "--",
        f"files/{JOURNAL_FILE}",
    ]
    rows.append(_git_latency(ctx, history, log_cmd, journal, logs))
    panel = Panel(root, root.parent / f"gunicorn-{'after' if maintained else 'before'}.log")
    panel.start()
    try:
        panel.sign_in(USER)
        assert panel.proc is not None
        with TreeSampler(panel.proc.pid) as sampler:
            rows.append(
                _latency(
                    ctx,
                    panel,
                    sampler,
                    listing,
                    f"/s/{USER}/{DOCS}/tree/{BIG}?at={old}",
                    b"note-00000.txt",
                )
            )
            rows.append(
                _latency(
                    ctx,
                    panel,
                    sampler,
                    history,
                    f"/s/{USER}/{JOURNAL}/history/{JOURNAL_FILE}",
                    JOURNAL_FILE.encode(),
                )
            )
            if maintained:
                rows += _zip(ctx, panel, sampler, root, logs)
    finally:
        panel.stop()
    return rows


def _zip(ctx: Context, panel: Panel, sampler: TreeSampler, root: Path, logs: Path) -> list[Row]:
    s = sizes(ctx)
    step = step_zip(ctx)
    total = sum(s.media.values())
    docs = root / "repos" / USER / f"{DOCS}.git"
    head = run_quiet(["git", "rev-parse", "main"], env=git_env(docs)).stdout.decode().strip()
    out = root.parent / "downloads"
    out.mkdir(exist_ok=True)
    data.warm_up(docs)  # both read a warm repository

    git_zip = out / "git-archive.zip"
    data.flush()
    ctx.log(f"{FLOOR}: {step}")
    git = measure(
        ["git", "archive", "--format=zip", "-0", "-o", str(git_zip), f"{head}:files/{MEDIA}"],
        log_dir=logs,
        name="git-archive",
        env=git_env(docs),
        cwd=docs,
        timeout=ctx.step_timeout,
    )
    _check_zip(ctx, FLOOR, git_zip, s.media)

    panel_zip = out / "panel.zip"
    cookies = panel.cookie_file(out / "cookies.txt")
    url = f"{panel.base_url}/s/{USER}/{DOCS}/archive/{MEDIA}?format=zip&at={head}"
    data.flush()
    ctx.log(f"{PANEL}: {step}")
    since = time.monotonic()
    got = measure(
        ["curl", "-sS", "--fail", "-b", str(cookies), "-o", str(panel_zip), url],
        log_dir=logs,
        name="panel-zip",
        env=clean_env(),
        timeout=ctx.step_timeout,
    )
    server = sampler.window(since)
    _check_zip(ctx, PANEL, panel_zip, s.media)
    rows = [
        Row(
            FLOOR,
            step,
            seconds=git.seconds,
            rate=total / git.seconds,
            peak_rss=git.peak_rss,
            peak_anon=git.peak_anon,
            note="git archive",
        ),
        Row(
            PANEL,
            step,
            seconds=got.seconds,
            ratio=got.seconds / git.seconds,
            rate=total / got.seconds,
            peak_rss=server.peak_rss,
            peak_anon=server.peak_anon,
            note=f"curl; RSS is the server's; curl's own {megabytes(got.peak_rss)} MB",
        ),
    ]
    for path in (git_zip, panel_zip):
        path.unlink()
    return rows


def _check_zip(ctx: Context, tool: str, path: Path, files: dict[str, int]) -> None:
    try:
        with zipfile.ZipFile(path) as zf:
            entries = {
                i.filename.rsplit("/", 1)[-1]: i.file_size for i in zf.infolist() if not i.is_dir()
            }
            bad = zf.testzip()
    except (OSError, zipfile.BadZipFile) as exc:
        ctx.problem(f"{tool}: the zip does not open: {exc}")
        return
    if entries != files:
        ctx.problem(
            f"{tool}: the zip holds {sorted(entries.items())}, expected {sorted(files.items())}"
        )
    if bad is not None:
        ctx.problem(f"{tool}: the zip's {bad} fails its CRC")


def run(ctx: Context) -> list[Row]:
    s = sizes(ctx)
    run_dir = ctx.run_dir("browse")
    root = run_dir / "data"
    logs = run_dir / "logs"
    start = datetime(2024, 1, 1, tzinfo=UTC)
    begun = time.monotonic()
    old, _, total = _build_docs(ctx, root, start)
    _build_journal(ctx, root, start)
    ctx.data_description.append(
        f"Data: segment `{DOCS}`: `{BIG}/` with {s.entries:,} files and `{MEDIA}/` with "
        f"{len(s.media)} random files of {total / 1e9:.2f} GB, 3 snapshots; segment "
        f"`{JOURNAL}`: {s.commits:,} snapshots, `{JOURNAL_FILE}` changed in every {s.every}th "
        f"({s.commits // s.every} versions). Built in {time.monotonic() - begun:.0f} s."
    )
    rows = _measure_pages(ctx, root, old, maintained=False, logs=logs)
    for segment in (DOCS, JOURNAL):
        repo = Repository.open(root / "repos" / USER / f"{segment}.git")
        ctx.log(f"{PANEL}: maintain {segment}")
        t = time.monotonic()
        repo.maintain()
        rows.append(Row(PANEL, f"maintain {segment}", seconds=time.monotonic() - t))
    rows += _measure_pages(ctx, root, old, maintained=True, logs=logs)
    _ratios(rows)
    if not ctx.keep:
        shutil.rmtree(root)
    return rows


def _ratios(rows: list[Row]) -> None:
    """p95 against git's p95 for latency rows (the zip row has its time ratio already)."""
    floor = {r.step: r for r in rows if r.tool == FLOOR}
    for r in rows:
        base = floor.get(r.step)
        if r.tool == FLOOR and (r.p95 is not None or r.seconds is not None):
            r.ratio = 1.0
        elif base and r.p95 is not None and base.p95:
            r.ratio = r.p95 / base.p95


def targets(ctx: Context, rows: list[Row]) -> list[Target]:
    def find(tool: str, step: str) -> Row | None:
        return next((r for r in rows if r.tool == tool and r.step == step), None)

    result = []
    for step, limit in (
        (step_listing(ctx, True), TARGET_LISTING),
        (step_history(ctx, True), TARGET_HISTORY),
    ):
        row = find(PANEL, step)
        goal = f"{step}: p95 ≤ {limit * 1000:.0f} ms"
        if row and row.p95 is not None:
            result.append(Target(goal, f"{row.p95 * 1000:.0f} ms", row.p95 <= limit))
        else:
            result.append(Target(goal, "not measured", None))
    step = step_zip(ctx)
    ours, git = find(PANEL, step), find(FLOOR, step)
    goal = f"{step}: ≥ {TARGET_ZIP}× the speed of `git archive` to a file"
    if ours and git and ours.rate and git.rate:
        r = ours.rate / git.rate
        measured = f"{ours.rate / 1e6:.0f} MB/s vs {git.rate / 1e6:.0f} MB/s = {r:.2f}×"
        result.append(Target(goal, measured, r >= TARGET_ZIP))
    else:
        result.append(Target(goal, "not measured", None))
    return result
