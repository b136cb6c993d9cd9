"""Scenario "mirror": the Pi's mirror of a history, against plain git over the same HTTP.

A real cloud (`bluegrass-cloud run`) serves the tree's history, committed with
`bluegrass-cloud commit` and packed with `maintain`; `bluegrass-appliance mirror` (a drive
folder, a state folder, enrolled with a device code) mirrors it first and incrementally,
against `git clone --bare` and `git fetch` of the same URL with the same credentials. Then
the daemon, `bluegrass-appliance run`: its memory idle, and at its peak while mirroring a
history that holds one large random file.
"""

from __future__ import annotations

import base64
import json
import shutil
import statistics
import subprocess
import time
from datetime import datetime
from pathlib import Path

from bluegrass.core import enrollment

from bench.lib import data
from bench.lib.context import Context
from bench.lib.measure import CommandFailed, Measurement, TreeSampler, measure, run_quiet
from bench.lib.report import (
    Row,
    Target,
    add_ratios,
    measured_row,
    median_row,
    megabytes,
    project_revision,
)
from bench.lib.servers import Cloud, dies_with_us, poll_until, stop_process, venv_program
from bench.lib.tools import clean_env

TITLE = (
    "Mirror: the Pi's first, incremental and up-to-date mirror against plain git over the same "
    "HTTP endpoint; the daemon's memory idle and while mirroring a large file"
)
USES_TOOLS = False
SUPPORTS_SUBSET = True
COLUMNS = ["tool", "step", "seconds", "ratio", "peak_rss", "peak_anon", "note"]
HEADERS = {"ratio": "× git"}

USER = "bench"
SEGMENT = "linux"
LARGE_USER = "bench-large"  # a user of its own, so the daemon mirrors only the large history
LARGE_SEGMENT = "big"
FLOOR = "git"
APPLIANCE = "bluegrass"
STEP_FIRST = "first mirror"
STEP_INCREMENTAL = "incremental mirror (1% changed)"
STEP_UPTODATE = "up-to-date mirror"
STEP_JOB = "incremental mirror, the daemon's job (1% changed)"
STEP_IDLE = "daemon idle"
STEP_IDLE_PANEL = "daemon idle, with its panel"
CHANGE_EVERY = 100
UPTODATE_RUNS = 3
INCREMENTAL_RUNS = 3
MiB = 1024 * 1024
FULL_LARGE = 1024 * MiB
QUICK_LARGE = 64 * MiB
FULL_IDLE_SECONDS = 10.0
QUICK_IDLE_SECONDS = 3.0
# After its first job the daemon is left this long before its idle memory is sampled
# (a measurement window, not a readiness wait: readiness is the job's end in `status`).
SETTLE_SECONDS = 3.0
STATUS_POLL = 0.5  # each `status --json` is a Python process: not too often
TARGET_RATIO = 1.1
TARGET_IDLE = 60 * 1_000_000
TARGET_PEAK = 200 * 1_000_000


def large_size(ctx: Context) -> int:
    return QUICK_LARGE if ctx.quick else FULL_LARGE


def large_step(ctx: Context) -> str:
    size = large_size(ctx)
    label = f"{size // MiB} MiB" if size < 1024 * MiB else f"{size // (1024 * MiB)} GiB"
    return f"mirror a {label} file"


def versions(ctx: Context) -> dict[str, str]:
    git = run_quiet(["git", "--version"]).stdout.decode().strip().removeprefix("git version ")
    return {"bluegrass": project_revision(("core", "cloud", "appliance")), "git": git}


def describe_method(ctx: Context) -> list[str]:
    return [
        "One cloud, `bluegrass-cloud run` on free loopback ports. The tree is hard-linked into "
        "`DATA/files/bench/linux/`, committed with `bluegrass-cloud commit` and packed with "
        "`bluegrass-cloud maintain` before `run` starts; its scheduler's catching-up commit "
        "(no change) is waited for. The cloud's repository is read once before the first "
        "timed step, so every client meets a warm page cache on the server.",
        "bluegrass: `bluegrass-appliance --state STATE --drive-dir DRIVE mirror --json`, "
        "enrolled with the code of `device add bench --name pi`. git: `git clone --bare` of "
        "`http://127.0.0.1:PORT/git/bench/linux.git`, then `git fetch origin "
        "'refs/heads/*:refs/heads/*'`, with the same device's credentials as an "
        "`Authorization: Basic` header (`http.<url>.extraHeader`, given through "
        "`GIT_CONFIG_COUNT`, as the appliance does) and no user or system git config; git "
        "therefore keeps its own defaults (no `transfer.fsckObjects`, no `core.fsync`), where "
        "the appliance checks every object received and fsyncs everything (its settings).",
        f"Incremental: every {CHANGE_EVERY}th file of the cloud's tree gets "
        f"{len(data.CHANGE_SUFFIX)} bytes appended, then `bluegrass-cloud commit` and "
        "`maintain` (the cloud's daily job does both); git fetches first, then the appliance; "
        f"{INCREMENTAL_RUNS} rounds, each with a change of its own, median. "
        f"Up to date: the same again with nothing new, {UPTODATE_RUNS} times, median.",
        "Daemon: `bluegrass-appliance run` (with `--no-panel` where the daemon has a panel, "
        "and `[files] enabled = false`, so it only mirrors). The daemon's job: "
        f"{INCREMENTAL_RUNS} more rounds of a 1% change, git fetching it, then a daemon of the "
        "same state folder started, whose first job mirrors it; its time is the job's own "
        "record in `status --json` (`started` to `finished`: the segment listing, the mirror's "
        "settings check, the fetch, the checks after it and the state writes; not Python's "
        "start-up, which a Pi pays once per boot). Idle: the last of those daemons, after its "
        f"job is recorded in `status --json` and {SETTLE_SECONDS:.0f} s more, sampled for the "
        "idle window; the median of that window is the idle RSS, the note gives its largest "
        "sample. Large file: another user's history holding one random file, mirrored by a "
        "fresh daemon (its first job, at start); the peak is over the daemon's whole life up "
        "to the job's end in `status`, the time is the job's own (`started` to `finished`). "
        "Its peer is `git clone --bare` of the same history.",
        "Time includes process start-up. Peak RSS is the client's process tree (the appliance "
        "and the git it runs; git and its helpers), sampled every 20 ms; the cloud's memory "
        "is not counted.",
    ]


class Appliance:
    """The real `bluegrass-appliance` with a state folder and a drive folder of its own."""

    def __init__(self, folder: Path) -> None:
        self.state = folder / "state"
        self.drive = folder / "drive"
        self.log_file = folder / "daemon.log"
        self.state.mkdir(parents=True)
        self.drive.mkdir(parents=True)
        # Only mirrors: pulling the latest files would download the same data over sftp.
        (self.state / "bluegrass-appliance.toml").write_text("[files]\nenabled = false\n")

    def command(self, *args: str) -> list[str]:
        return [
            venv_program("bluegrass-appliance"),
            "--state",
            str(self.state),
            "--drive-dir",
            str(self.drive),
            *args,
        ]

    def status(self) -> dict[str, object]:
        out = run_quiet(self.command("status", "--json"), env=clean_env(), ok_codes=(0, 1))
        return dict(json.loads(out.stdout))

    def last_mirror(self) -> dict[str, object] | None:
        jobs = self.status().get("last_jobs") or {}
        job = jobs.get("mirror") if isinstance(jobs, dict) else None
        return job if isinstance(job, dict) else None


def _credentials_env(code: str, base_url: str, git_dir: Path | None = None) -> dict[str, str]:
    """Plain git, isolated, with the device's credentials for this URL only."""
    e = enrollment.decode(code)
    token = base64.b64encode(f"{e.user}:{e.password}".encode()).decode()
    env = clean_env(
        GIT_CONFIG_GLOBAL="/dev/null",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_TERMINAL_PROMPT="0",
        GIT_CONFIG_COUNT="1",
        GIT_CONFIG_KEY_0=f"http.{base_url}/.extraHeader",
        GIT_CONFIG_VALUE_0=f"Authorization: Basic {token}",
    )
    if git_dir is not None:
        env["GIT_DIR"] = str(git_dir)
    return env


def _head(git_dir: Path) -> str:
    out = run_quiet(
        ["git", "--git-dir", str(git_dir), "rev-parse", "--verify", "refs/heads/main"],
        env=clean_env(GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1"),
    )
    return out.stdout.decode().strip()


def _timed(
    ctx: Context, tool: str, step: str, cmd: list[str], logs: Path, **kw: object
) -> Measurement:
    data.flush()
    ctx.log(f"{tool}: {step}")
    name = f"{tool}-{step.split(' (')[0].replace(' ', '-')}"
    m = measure(cmd, log_dir=logs, name=name, timeout=ctx.step_timeout, **kw)  # type: ignore[arg-type]
    ctx.log(f"{tool}: {step}: {m.seconds:.2f} s, peak RSS {megabytes(m.peak_rss)} MB")
    return m


def _mirror(ctx: Context, app: Appliance, step: str, logs: Path, head: str) -> Measurement:
    m = _timed(ctx, APPLIANCE, step, app.command("mirror", "--json"), logs, env=clean_env())
    try:
        report = json.loads(m.output())
    except json.JSONDecodeError as exc:
        ctx.problem(f"{APPLIANCE}, {step}: `mirror --json` printed no JSON ({exc})")
        return m
    if report.get("outcome") != "ok":
        ctx.problem(
            f"{APPLIANCE}, {step}: outcome {report.get('outcome')}: {report.get('message')}"
        )
    got = _head(app.drive / "bluegrass" / USER / f"{SEGMENT}.git")
    if got != head:
        ctx.problem(
            f"{APPLIANCE}, {step}: the mirror's main is {got[:12]}, the cloud's {head[:12]}"
        )
    return m


def _with_note(row: Row, note: str) -> Row:
    row.note = f"{row.note}; {note}" if row.note else note
    return row


def _check_git(ctx: Context, step: str, git_dir: Path, head: str) -> None:
    got = _head(git_dir)
    if got != head:
        ctx.problem(f"{FLOOR}, {step}: the clone's main is {got[:12]}, the cloud's {head[:12]}")


def _commit(ctx: Context, cloud: Cloud, user: str, segment: str) -> str:
    start = time.monotonic()
    out = json.loads(cloud.cli("commit", "--user", user, "--segment", segment, "--json"))
    item = out["segments"][0]
    if not item.get("committed"):
        raise CommandFailed(f"bluegrass-cloud commit of {user}/{segment} committed nothing")
    ctx.log(f"cloud: committed {user}/{segment} in {time.monotonic() - start:.1f} s")
    start = time.monotonic()
    cloud.cli("maintain", "--user", user)
    ctx.log(f"cloud: maintain {user} in {time.monotonic() - start:.1f} s")
    return str(item["commit"])


def _daemon_args() -> list[str]:
    """`--no-panel` where the daemon serves a panel (newer appliances), nothing before."""
    out = run_quiet([venv_program("bluegrass-appliance"), "run", "--help"], env=clean_env())
    return ["--no-panel"] if "--no-panel" in out.stdout.decode() else []


def _job_seconds(job: dict[str, object]) -> float | None:
    # The epoch seconds the daemon recorded; the ISO times beside them have whole seconds.
    started, finished = job.get("started_ts"), job.get("finished_ts")
    if isinstance(started, int | float) and isinstance(finished, int | float):
        return float(finished) - float(started)
    try:
        started = datetime.fromisoformat(str(job["started"]))
        finished = datetime.fromisoformat(str(job["finished"]))
    except (KeyError, ValueError):
        return None
    return (finished - started).total_seconds()


def _run_daemon(
    ctx: Context, app: Appliance, extra: list[str], idle_seconds: float | None
) -> tuple[dict[str, object], Row, Row | None]:
    """Start the daemon, wait for its first mirror job, then (optionally) sample it idle.

    Returns (the job, a row for the job's stretch, a row for the idle window or None).
    """
    before = app.last_mirror()
    before_id = before.get("id") if before else None
    with app.log_file.open("ab") as log:
        proc = subprocess.Popen(
            dies_with_us(app.command("run", *extra)),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=clean_env(),
            start_new_session=True,
        )
    try:
        with TreeSampler(proc.pid) as sampler:
            started = time.monotonic()
            found: dict[str, object] = {}

            def job_done() -> bool:
                job = app.last_mirror()
                if job and job.get("id") != before_id and job.get("finished"):
                    found.update(job)
                    return True
                return False

            poll_until(
                job_done, "the daemon's first mirror job", ctx.step_timeout, proc, app.log_file
            )
            done = time.monotonic()
            busy = sampler.window(started, done)
            job_row = Row(
                APPLIANCE,
                "",
                _job_seconds(found),
                peak_rss=busy.peak_rss,
                peak_anon=busy.peak_anon,
            )
            idle_row = None
            if idle_seconds is not None:
                # A measurement window, not a readiness wait (see SETTLE_SECONDS).
                time.sleep(SETTLE_SECONDS)
                since = time.monotonic()
                time.sleep(idle_seconds)
                idle = sampler.window(since)
                idle_row = Row(
                    APPLIANCE,
                    "",
                    peak_rss=idle.median_rss,
                    peak_anon=idle.median_anon,
                    note=f"median of {idle.samples} samples over {idle_seconds:.0f} s; "
                    f"largest {megabytes(idle.peak_rss)} MB",
                )
            if proc.poll() is not None:
                raise CommandFailed(f"the daemon exited {proc.returncode} (log {app.log_file})")
    finally:
        stop_process(proc)
    if found.get("outcome") != "ok":
        ctx.problem(f"daemon: mirror job outcome {found.get('outcome')}: {found.get('message')}")
    return found, job_row, idle_row


def run(ctx: Context) -> list[Row]:
    tree, what = data.source_tree(ctx.cache, ctx.log, quick=ctx.quick, subset=ctx.subset)
    size = large_size(ctx)
    large = data.media_files(ctx.cache, {"large.bin": size}, ctx.log, name=f"large-{size // MiB}m")
    stats = data.tree_stats(tree)
    ctx.data_description += [
        f"Tree: {what}, {stats.files:,} files, {stats.symlinks} symlink(s), "
        f"{stats.bytes / 1e9:.2f} GB, committed as one snapshot.",
        f"Large file: one random file of {size / 1e9:.2f} GB ({size // MiB} MiB), the only file "
        "of another user's segment.",
    ]
    run_dir = ctx.run_dir("mirror")
    logs = run_dir / "logs"
    cloud = Cloud(run_dir / "cloud", ctx.log)
    cloud.init()
    cloud.add_user(USER)
    code = cloud.add_device(USER, "pi")
    cloud.add_user(LARGE_USER)
    large_code = cloud.add_device(LARGE_USER, "pi")
    live = cloud.live_tree(USER, SEGMENT)
    data.hardlink_copy(tree, live)
    ctx.log("cloud: committing the tree (untimed)")
    head = _commit(ctx, cloud, USER, SEGMENT)
    cloud.live_tree(LARGE_USER, LARGE_SEGMENT).mkdir(parents=True)
    (cloud.live_tree(LARGE_USER, LARGE_SEGMENT) / "large.bin").hardlink_to(large / "large.bin")
    large_head = _commit(ctx, cloud, LARGE_USER, LARGE_SEGMENT)
    rows: list[Row] = []
    try:
        cloud.start()
        cloud.settle([(USER, SEGMENT), (LARGE_USER, LARGE_SEGMENT)])
        data.warm_up(cloud.repo(USER, SEGMENT))
        rows += _mirror_steps(ctx, run_dir, cloud, code, head, logs)
        rows += _daemon_steps(ctx, run_dir, cloud, large_code, large_head, logs)
    finally:
        cloud.stop()
    add_ratios(rows, floor=FLOOR)
    order = [FLOOR, APPLIANCE]
    steps = [STEP_FIRST, STEP_INCREMENTAL, STEP_UPTODATE, STEP_JOB, STEP_IDLE, STEP_IDLE_PANEL]
    steps.append(large_step(ctx))
    rows.sort(key=lambda r: (steps.index(r.step), order.index(r.tool)))
    if not ctx.keep:
        for big in ("cloud/data", "git", "large-git", "appliance", "appliance-large"):
            if (run_dir / big).exists():
                shutil.rmtree(run_dir / big)
    return rows


def _mirror_steps(
    ctx: Context, run_dir: Path, cloud: Cloud, code: str, head: str, logs: Path
) -> list[Row]:
    rows: list[Row] = []
    url = cloud.git_url(USER, SEGMENT)
    clone = run_dir / "git" / f"{SEGMENT}.git"
    env = _credentials_env(code, cloud.base_url)
    m = _timed(
        ctx, FLOOR, STEP_FIRST, ["git", "clone", "--bare", "-q", url, str(clone)], logs, env=env
    )
    _check_git(ctx, STEP_FIRST, clone, head)
    rows.append(measured_row(FLOOR, STEP_FIRST, m))

    app = Appliance(run_dir / "appliance")
    run_quiet(app.command("enroll", code), env=clean_env())
    rows.append(measured_row(APPLIANCE, STEP_FIRST, _mirror(ctx, app, STEP_FIRST, logs, head)))

    fetch = [
        "git",
        "--git-dir",
        str(clone),
        "fetch",
        "-q",
        "--no-auto-gc",
        "origin",
        "refs/heads/*:refs/heads/*",
    ]

    def one_more_change() -> tuple[str, str]:
        changed = data.modify_every_nth(cloud.live_tree(USER, SEGMENT), CHANGE_EVERY)
        ctx.log(f"cloud: changed {len(changed)} files")
        return _commit(ctx, cloud, USER, SEGMENT), f"{len(changed)} files changed"

    # Each round: a new 1% change on the cloud, git fetches it, then the appliance.
    plain, ours = [], []
    note = ""
    for _ in range(INCREMENTAL_RUNS):
        head, note = one_more_change()
        plain.append(_timed(ctx, FLOOR, STEP_INCREMENTAL, fetch, logs, env=env))
        _check_git(ctx, STEP_INCREMENTAL, clone, head)
        ours.append(_mirror(ctx, app, STEP_INCREMENTAL, logs, head))
    rows.append(_with_note(median_row(FLOOR, STEP_INCREMENTAL, plain), note))
    rows.append(_with_note(median_row(APPLIANCE, STEP_INCREMENTAL, ours), note))

    plain = [_timed(ctx, FLOOR, STEP_UPTODATE, fetch, logs, env=env) for _ in range(UPTODATE_RUNS)]
    rows.append(median_row(FLOOR, STEP_UPTODATE, plain))
    ours = [_mirror(ctx, app, STEP_UPTODATE, logs, head) for _ in range(UPTODATE_RUNS)]
    rows.append(median_row(APPLIANCE, STEP_UPTODATE, ours))

    # The daemon of the same state folder, as a Pi runs it: each round a new 1% change, git
    # fetches it, then a daemon is started and its first job mirrors it. The job's time is
    # the daemon's own record (`started` to `finished` in `status`): Python's start-up, paid
    # once per boot, is not in it. The last daemon is then sampled idle.
    idle_seconds = QUICK_IDLE_SECONDS if ctx.quick else FULL_IDLE_SECONDS
    no_panel = _daemon_args()
    plain, jobs = [], []
    idle: Row | None = None
    for i in range(INCREMENTAL_RUNS):
        head, note = one_more_change()
        plain.append(_timed(ctx, FLOOR, STEP_JOB, fetch, logs, env=env))
        _check_git(ctx, STEP_JOB, clone, head)
        last = i == INCREMENTAL_RUNS - 1
        _, job, idle = _run_daemon(ctx, app, no_panel, idle_seconds if last else None)
        got = _head(app.drive / "bluegrass" / USER / f"{SEGMENT}.git")
        if got != head:
            ctx.problem(
                f"daemon, {STEP_JOB}: the mirror's main is {got[:12]}, the cloud's {head[:12]}"
            )
        if job.seconds is not None:
            ctx.log(f"{APPLIANCE}: {STEP_JOB}: {job.seconds:.2f} s")
            jobs.append(job)
    rows.append(_with_note(median_row(FLOOR, STEP_JOB, plain), note))
    if jobs:
        times = sorted(j.seconds or 0.0 for j in jobs)
        rows.append(
            Row(
                APPLIANCE,
                STEP_JOB,
                statistics.median(times),
                peak_rss=max(j.peak_rss or 0 for j in jobs),
                peak_anon=max(j.peak_anon or 0 for j in jobs),
                note=f"median of {len(jobs)} jobs ({times[0]:.2f}–{times[-1]:.2f} s); {note}; "
                "peak over each daemon's life until its job ended",
            )
        )
    if idle is not None:
        idle.step = STEP_IDLE
        rows.append(idle)
    if no_panel:
        # This daemon also serves the Pi's panel: the footprint of the two together.
        extra = ["--panel-bind", "127.0.0.1", "--panel-port", "0"]
        _, _, idle = _run_daemon(ctx, app, extra, idle_seconds)
        if idle is not None:
            idle.step = STEP_IDLE_PANEL
            idle.note += "; the panel's gunicorn included"
            rows.append(idle)
    return rows


def _daemon_steps(
    ctx: Context, run_dir: Path, cloud: Cloud, code: str, head: str, logs: Path
) -> list[Row]:
    step = large_step(ctx)
    rows: list[Row] = []
    env = _credentials_env(code, cloud.base_url)
    clone = run_dir / "large-git" / f"{LARGE_SEGMENT}.git"
    data.warm_up(cloud.repo(LARGE_USER, LARGE_SEGMENT))
    url = cloud.git_url(LARGE_USER, LARGE_SEGMENT)
    m = _timed(ctx, FLOOR, step, ["git", "clone", "--bare", "-q", url, str(clone)], logs, env=env)
    _check_git(ctx, step, clone, head)
    rows.append(measured_row(FLOOR, step, m, "git clone --bare"))

    app = Appliance(run_dir / "appliance-large")
    run_quiet(app.command("enroll", code), env=clean_env())
    data.flush()
    ctx.log(f"{APPLIANCE}: daemon, {step}")
    _, job_row, _ = _run_daemon(ctx, app, _daemon_args(), None)
    got = _head(app.drive / "bluegrass" / LARGE_USER / f"{LARGE_SEGMENT}.git")
    if got != head:
        ctx.problem(f"daemon, {step}: the mirror's main is {got[:12]}, the cloud's {head[:12]}")
    job_row.step = step
    job_row.note = "the daemon's first job; peak over its life until the job ended"
    ctx.log(f"{APPLIANCE}: daemon, {step}: peak RSS {megabytes(job_row.peak_rss)} MB")
    rows.append(job_row)
    return rows


def targets(ctx: Context, rows: list[Row]) -> list[Target]:
    def find(tool: str, step: str) -> Row | None:
        return next((r for r in rows if r.tool == tool and r.step == step), None)

    def ratio(step: str) -> tuple[float, str] | None:
        bg, floor = find(APPLIANCE, step), find(FLOOR, step)
        if bg and floor and bg.seconds is not None and floor.seconds:
            r = bg.seconds / floor.seconds
            return r, f"{bg.seconds:.2f} s vs {floor.seconds:.2f} s = {r:.2f}×"
        return None

    result = []
    first = ratio(STEP_FIRST)
    goal = f"{STEP_FIRST} ≤ {TARGET_RATIO}× plain git clone"
    result.append(
        Target(goal, first[1], first[0] <= TARGET_RATIO)
        if first
        else Target(goal, "not measured", None)
    )
    # The Pi mirrors in its daemon's hourly job; the `mirror` command is a manual run that also
    # pays Python's start-up. The target is the job's; the command's ratio is shown beside it.
    job, command = ratio(STEP_JOB), ratio(STEP_INCREMENTAL)
    goal = f"incremental mirror (1% changed), the daemon's job, ≤ {TARGET_RATIO}× plain git fetch"
    also = f"; the `mirror` command, start-up included: {command[1]}" if command else ""
    result.append(
        Target(goal, job[1] + also, job[0] <= TARGET_RATIO)
        if job
        else Target(goal, "not measured" + also, None)
    )
    idle = find(APPLIANCE, STEP_IDLE)
    goal = f"daemon idle RSS ≤ {TARGET_IDLE / 1e6:.0f} MB"
    if idle and idle.peak_rss is not None:
        result.append(Target(goal, f"{megabytes(idle.peak_rss)} MB", idle.peak_rss <= TARGET_IDLE))
    else:
        result.append(Target(goal, "not measured", None))
    step = large_step(ctx)
    peak = find(APPLIANCE, step)
    what = step.removeprefix("mirror a ")
    goal = f"daemon peak RSS while it mirrors a {what} ≤ {TARGET_PEAK / 1e6:.0f} MB"
    if peak and peak.peak_rss is not None:
        anon = f" (anon {megabytes(peak.peak_anon)} MB)" if peak.peak_anon is not None else ""
        result.append(
            Target(goal, f"{megabytes(peak.peak_rss)} MB{anon}", peak.peak_rss <= TARGET_PEAK)
        )
    else:
        result.append(Target(goal, "not measured", None))
    return result
