"""Scenario "replica": the cloud's replica on S3 against plain rclone copy and git clone.

A real cloud data root holds the tree split into ten segments of one user, committed with
`bluegrass-cloud commit` and packed with `maintain`. A real S3 server, `rclone serve s3` on
loopback, takes two buckets: one for `bluegrass-cloud replicate`, one for the floor, plain
`rclone copy` of the same bare repositories through a crypt remote configured by environment
variables exactly as the replica configures its own (bluegrass.cloud.replica.remote.Bucket).
Steps: the first replicate, a replicate with nothing new, a day's 1% change, and
`rebuild --from-replica` into an empty data root against `git clone` of the same histories.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from bluegrass.cloud.replica.keys import CryptSecret
from bluegrass.cloud.replica.remote import AREA_REMOTE, Bucket
from bluegrass.cloud.replica.settings import ReplicaSettings
from bluegrass.core import rclone

from bench.lib import data
from bench.lib.context import Context
from bench.lib.measure import CommandFailed, Measurement, combine, measure, run_quiet
from bench.lib.report import Row, Target, megabytes, project_revision, ratio
from bench.lib.servers import (
    Cloud,
    dies_with_us,
    free_port,
    poll_until,
    port_open,
    stop_process,
    venv_program,
)
from bench.lib.tools import clean_env

TITLE = (
    "Replica: the cloud's histories to S3 through rclone crypt (first, nothing new, a day's "
    "1% change) against plain `rclone copy` of the same repositories through the same crypt "
    "remote; `rebuild --from-replica` against `git clone` of the same histories"
)
USES_TOOLS = False
COLUMNS = ["tool", "step", "seconds", "ratio", "rate", "size", "peak_rss", "peak_anon", "note"]
HEADERS = {
    "ratio": "time × floor",
    "rate": "repos MB/s",
    "size": "sent to bucket (MB)",
}

USER = "bench"
SEGMENTS = 10
FLOOR = "rclone copy"
CLONE = "git clone"
BLUEGRASS = "bluegrass"
BUNDLES_ALONE = "git bundle create, alone"
STEP_FIRST = "first upload"
STEP_NOTHING = "nothing new"
STEP_DAY = "a day's 1% change"
STEP_REBUILD = "rebuild (histories and files)"
CHANGE_EVERY = 100
NOTHING_RUNS = 3
# The S3 server's keys; rclone serve s3 wants AWS-length ones (tests/support/s3.py).
ACCESS_KEY = "AKIABLUEGRASSBENCH001"
SECRET_KEY = "bluegrassBenchSecretKey0123456789abcdefg"
REPLICA_BUCKET = "replica"
FLOOR_BUCKET = "floor"
TARGET_THROUGHPUT = 0.8
TARGET_NOTHING_SECONDS = 1.0
TARGET_DAY_SIZE = 1.2
# A second first replicate, traced (replica_trace.py), goes into a bucket of its own.
TRACE_BUCKET = "trace"
# Said while the throughput target fails, beside the traced breakdown of the same run.
GAP = (
    "What is left of the gap is work `rclone copy` does not do: git writes every bundle, and "
    "the largest (145 MB of the 247) must be whole, verified and hashed before any of it is "
    "sent (decision 143: checked, recorded, then sent), so its making is added to its upload; "
    "on two shared cores, making the other bundles meanwhile takes CPU from the uploads. "
    "Since the 0.29× of the run before (decisions 162–166): bundles made while the earlier "
    "ones upload, largest first, hashed as git writes them; no crypt listing of an empty "
    "area; secrets obscured without starting rclone; a bundle and its refs in one upload. "
    "The price is memory: two uploads and the server state's rclone run at once, so the "
    "peak RSS is higher."
)
# The day's new objects' size in bytes, by run (Context has no room for a scenario's own facts).
_fresh: dict[int, int] = {}


def versions(ctx: Context) -> dict[str, str]:
    git = run_quiet(["git", "--version"]).stdout.decode().strip().removeprefix("git version ")
    out = run_quiet([str(rclone.binary()), "version"], env=_rclone_env()).stdout.decode()
    return {
        "bluegrass": project_revision(("core", "cloud")),
        "git": git,
        "rclone": out.split()[1] if out.split()[1:] else "?",
    }


def describe_method(ctx: Context) -> list[str]:
    return [
        f"One cloud data root (`bluegrass-cloud init`, user `{USER}`); the tree's top-level "
        f"entries are dealt into {SEGMENTS} segments `part-00` … `part-09` (largest first, each "
        "to the segment with the fewest files so far), hard-linked into `DATA/files/bench/`, "
        "committed with `bluegrass-cloud commit` and packed with `maintain` (untimed). "
        "`[replica]` points at `rclone serve s3` on a free loopback port over a local folder "
        "(started by the scenario, readiness by polling its port); its memory is not counted.",
        f"{FLOOR}: `rclone copy DATA/repos/bench/ bgarea:` with `--config ''`, the remotes "
        "`bgs3` (s3) and `bgarea` (crypt, standard name encryption, base64 names) set by "
        "RCLONE_CONFIG_* variables built by the replica's own code, into a bucket of its own; "
        "rclone's default flags. bluegrass: `bluegrass-cloud replicate --json` (git bundles, "
        "`git bundle verify`, refs, manifest; the server's state under the administrator's "
        "secret too).",
        "repos MB/s is the size of the ten bare repositories divided by the step's time: the "
        "same work for both, whatever each sends. The row "
        f"`{BUNDLES_ALONE}` is no upload: `git bundle create --all` of each repository to "
        "local disk, one after another, timed to show how much of the first replicate's time "
        "making the bundles takes by itself. sent to bucket is the growth of the bucket's "
        "folder on disk (encrypted objects as stored).",
        f"Nothing new: {NOTHING_RUNS} runs each, median. A day's 1% change: every "
        f"{CHANGE_EVERY}th file of each segment gets {len(data.CHANGE_SUFFIX)} bytes appended, "
        "then `commit` and `maintain` (untimed, as the daily job does); the new objects are "
        "those reachable from the new commits and not the old ones, their size what git stores "
        "for them in the packed repositories (`%(objectsize:disk)`).",
        f"Rebuild: an empty data root holding only `bluegrass-cloud.toml` and "
        f"`replica/admin.json`, `bluegrass-cloud rebuild --from-replica --json`; each segment's "
        f"`main` is checked against the cloud's. {CLONE}: `git clone file://REPO` (the pack "
        "transport, with a checkout) of each of the ten repositories, one after another, times "
        "added.",
        "Time includes process start-up. Peak RSS is the measured command's process tree "
        "(Python, git, rclone), sampled every 20 ms; the S3 server is not counted.",
    ]


def _rclone_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("RCLONE_")}


class S3:
    """`rclone serve s3` over a folder: each top-level folder is a bucket."""

    def __init__(self, root: Path, log_file: Path) -> None:
        self.root = root
        self.log_file = log_file
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def bucket_dir(self, bucket: str) -> Path:
        return self.root / bucket

    def start(self) -> None:
        # rclone serve s3 finds its buckets when it starts: all are made before it.
        for bucket in (REPLICA_BUCKET, FLOOR_BUCKET, TRACE_BUCKET):
            self.bucket_dir(bucket).mkdir(parents=True, exist_ok=True)
        argv = [
            str(rclone.binary()),
            "serve",
            "s3",
            "--auth-key",
            f"{ACCESS_KEY},{SECRET_KEY}",
            "--addr",
            f"127.0.0.1:{self.port}",
            "--config",
            "",
            str(self.root),
        ]
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                dies_with_us(argv), stdout=log, stderr=log, env=_rclone_env()
            )
        poll_until(lambda: port_open(self.port), "rclone serve s3", 60, self.proc, self.log_file)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def settings(self, bucket: str) -> ReplicaSettings:
        return ReplicaSettings(
            endpoint=self.endpoint,
            bucket=bucket,
            region="",
            provider="Other",
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
            encrypt=True,
            full_every=0,  # unused by the floor
        )

    def replica_toml(self) -> str:
        return (
            "\n[replica]\n"
            f'endpoint = "{self.endpoint}"\n'
            f'bucket = "{REPLICA_BUCKET}"\n'
            'provider = "Other"\n'
            f'access_key_id = "{ACCESS_KEY}"\n'
            f'secret_access_key = "{SECRET_KEY}"\n'
        )


def _segments(tree: Path) -> list[list[Path]]:
    """The tree's top-level entries dealt into SEGMENTS groups of similar file counts."""
    counts: list[tuple[int, Path]] = []
    for entry in sorted(tree.iterdir()):
        if entry.is_dir() and not entry.is_symlink():
            n = sum(len(files) for _, _, files in os.walk(entry))
        else:
            n = 1
        counts.append((n, entry))
    groups: list[list[Path]] = [[] for _ in range(SEGMENTS)]
    sizes = [0] * SEGMENTS
    for n, entry in sorted(counts, key=lambda c: (-c[0], c[1].name)):
        i = sizes.index(min(sizes))
        groups[i].append(entry)
        sizes[i] += n
    return groups


def _segment_name(i: int) -> str:
    return f"part-{i:02d}"


def _heads(repos: Path) -> dict[str, str]:
    heads = {}
    for i in range(SEGMENTS):
        repo = repos / f"{_segment_name(i)}.git"
        out = run_quiet(
            ["git", "--git-dir", str(repo), "rev-parse", "--verify", "refs/heads/main"],
            env=clean_env(GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1"),
        )
        heads[_segment_name(i)] = out.stdout.decode().strip()
    return heads


def _new_objects_size(repos: Path, before: dict[str, str], after: dict[str, str]) -> int:
    """Bytes git stores for the objects reachable from `after` and not from `before`."""
    total = 0
    env = clean_env(GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1")
    for name, head in after.items():
        git_dir = str(repos / f"{name}.git")
        listed = run_quiet(
            ["git", "--git-dir", git_dir, "rev-list", "--objects", head, f"^{before[name]}"],
            env=env,
        ).stdout
        ids = b"".join(line.split(b" ", 1)[0] + b"\n" for line in listed.splitlines() if line)
        proc = subprocess.run(
            ["git", "--git-dir", git_dir, "cat-file", "--batch-check=%(objectsize:disk)"],
            input=ids,
            capture_output=True,
            env=env,
            check=False,
        )
        if proc.returncode != 0:
            raise CommandFailed(f"git cat-file in {git_dir}: {proc.stderr.decode()[-300:]}")
        total += sum(int(x) for x in proc.stdout.split())
    return total


def _timed(
    ctx: Context, tool: str, step: str, cmd: list[str], logs: Path, env: dict[str, str], n: int = 0
) -> Measurement:
    data.flush()
    ctx.log(f"{tool}: {step}")
    name = f"{tool.replace(' ', '-')}-{step.split(' ')[0]}-{n}"
    m = measure(cmd, log_dir=logs, name=name, env=env, timeout=ctx.step_timeout)
    ctx.log(f"{tool}: {step}: {m.seconds:.2f} s, peak RSS {megabytes(m.peak_rss)} MB")
    return m


def _replicate(ctx: Context, cloud: Cloud, step: str, logs: Path, n: int = 0) -> Measurement:
    m = _timed(ctx, BLUEGRASS, step, cloud.command("replicate", "--json"), logs, clean_env(), n)
    try:
        result = json.loads(m.output())
    except json.JSONDecodeError as exc:
        ctx.problem(f"{BLUEGRASS}, {step}: `replicate --json` printed no JSON ({exc})")
        return m
    if result.get("errors"):
        ctx.problem(f"{BLUEGRASS}, {step}: replicate reported {result['errors']}")
    return m


def _row(
    tool: str,
    step: str,
    m: Measurement,
    repo_bytes: int | None,
    sent: int | None,
    note: str = "",
) -> Row:
    return Row(
        tool,
        step,
        m.seconds,
        peak_rss=m.peak_rss,
        peak_anon=m.peak_anon,
        size=sent,
        rate=repo_bytes / m.seconds if repo_bytes and m.seconds > 0 else None,
        note=note,
    )


def _median_row(tool: str, step: str, runs: list[Measurement], sent: int) -> Row:
    times = sorted(m.seconds for m in runs)
    anon = [m.peak_anon for m in runs if m.peak_anon is not None]
    return Row(
        tool,
        step,
        statistics.median(times),
        peak_rss=max(m.peak_rss for m in runs),
        peak_anon=max(anon) if anon else None,
        size=sent,
        note=f"median of {len(runs)} ({times[0]:.2f}–{times[-1]:.2f} s)",
    )


def run(ctx: Context) -> list[Row]:
    tree, what = data.source_tree(ctx.cache, ctx.log, quick=ctx.quick, subset=None)
    folder = ctx.run_dir("replica")
    logs = folder / "logs"
    cloud = Cloud(folder / "cloud", ctx.log)
    cloud.init()
    cloud.add_user(USER)
    groups = _segments(tree)
    for i, group in enumerate(groups):
        live = cloud.live_tree(USER, _segment_name(i))
        live.mkdir(parents=True)
        for entry in group:
            data.hardlink_copy(entry, live / entry.name)
    stats = data.tree_stats(tree)
    ctx.log(f"replica: committing {stats.files} files in {SEGMENTS} segments")
    cloud.cli("commit", "--user", USER, "--json")
    cloud.cli("maintain", "--user", USER)
    repos = cloud.data / "repos" / USER
    repo_bytes = data.dir_size(repos)
    ctx.data_description = [
        f"Tree: {what}, {stats.files:,} files, {stats.bytes / 1e9:.2f} GB, in {SEGMENTS} "
        f"segments ({', '.join(str(len(g)) for g in groups)} top-level entries each); the ten "
        f"packed repositories hold {megabytes(repo_bytes)} MB."
    ]
    s3 = S3(folder / "s3", folder / "s3.log")
    s3.start()
    with (cloud.data / "bluegrass-cloud.toml").open("a") as f:
        f.write(s3.replica_toml())
    floor_secret = CryptSecret("floor", secrets.token_hex(32), secrets.token_hex(32))
    floor_env = Bucket(s3.settings(FLOOR_BUCKET)).env(floor_secret)
    floor_cmd = [str(rclone.binary()), "copy", f"{repos}/", f"{AREA_REMOTE}:", "--config", ""]
    bucket = s3.bucket_dir(REPLICA_BUCKET)
    floor_bucket = s3.bucket_dir(FLOOR_BUCKET)
    rows: list[Row] = []
    try:
        data.warm_up(repos)
        # -- the first upload
        before = data.dir_size(floor_bucket)
        m = _timed(ctx, FLOOR, STEP_FIRST, floor_cmd, logs, floor_env)
        rows.append(_row(FLOOR, STEP_FIRST, m, repo_bytes, data.dir_size(floor_bucket) - before))
        before = data.dir_size(bucket)
        m = _replicate(ctx, cloud, STEP_FIRST, logs)
        rows.append(_row(BLUEGRASS, STEP_FIRST, m, repo_bytes, data.dir_size(bucket) - before))
        rows.append(_bundles_alone(ctx, repos, folder / "bundles", logs, repo_bytes))
        # -- nothing new
        for tool, fn, where in (
            (
                FLOOR,
                lambda n: _timed(ctx, FLOOR, STEP_NOTHING, floor_cmd, logs, floor_env, n),
                floor_bucket,
            ),
            (BLUEGRASS, lambda n: _replicate(ctx, cloud, STEP_NOTHING, logs, n), bucket),
        ):
            before = data.dir_size(where)
            runs = [fn(n) for n in range(NOTHING_RUNS)]
            rows.append(_median_row(tool, STEP_NOTHING, runs, data.dir_size(where) - before))
        # -- a day's 1% change
        old = _heads(repos)
        changed = sum(
            len(data.modify_every_nth(cloud.live_tree(USER, _segment_name(i)), CHANGE_EVERY))
            for i in range(SEGMENTS)
        )
        cloud.cli("commit", "--user", USER, "--json")
        cloud.cli("maintain", "--user", USER)
        new = _heads(repos)
        if new == old:
            raise CommandFailed("the day's change committed nothing")
        fresh = _new_objects_size(repos, old, new)
        _fresh[id(ctx)] = fresh
        data.warm_up(repos)
        before = data.dir_size(bucket)
        m = _replicate(ctx, cloud, STEP_DAY, logs)
        sent = data.dir_size(bucket) - before
        rows.append(
            _row(
                BLUEGRASS,
                STEP_DAY,
                m,
                None,
                sent,
                f"{changed} files changed; new objects {megabytes(fresh)} MB; "
                f"sent {ratio(sent / fresh if fresh else None)} of them",
            )
        )
        before = data.dir_size(floor_bucket)
        m = _timed(ctx, FLOOR, STEP_DAY, floor_cmd, logs, floor_env)
        sent = data.dir_size(floor_bucket) - before
        rows.insert(
            len(rows) - 1,
            _row(
                FLOOR,
                STEP_DAY,
                m,
                None,
                sent,
                f"sent {ratio(sent / fresh if fresh else None)} of the new objects",
            ),
        )
        # -- rebuild
        rows += _rebuild(ctx, cloud, folder, logs, repos, new, repo_bytes)
        # -- where a first replicate's time goes (untimed in the table)
        _trace_first(ctx, cloud, s3, folder)
    finally:
        s3.stop()
        if not ctx.keep:
            shutil.rmtree(folder, ignore_errors=True)
    _explain_first(ctx, rows)
    base = {r.step: r for r in rows if r.tool == FLOOR}
    base[STEP_REBUILD] = next(r for r in rows if r.tool == CLONE)
    for r in rows:
        b = base.get(r.step)
        if b is not None and r.seconds is not None and b.seconds:
            r.ratio = r.seconds / b.seconds
    return rows


def _explain_first(ctx: Context, rows: list[Row]) -> None:
    """Where the first replicate's time goes, as far as this run can tell."""
    found = {(r.tool, r.step): r for r in rows}
    bg, alone = found.get((BLUEGRASS, STEP_FIRST)), found.get((BUNDLES_ALONE, STEP_FIRST))
    floor = found.get((FLOOR, STEP_FIRST))
    if not (bg and alone and floor and bg.seconds and alone.seconds and floor.seconds):
        return
    ctx.notes.append(
        f"The first replicate took {bg.seconds:.1f} s, of which making the bundles alone "
        f"takes {alone.seconds:.1f} s ({alone.seconds / bg.seconds:.0%}); the rest is "
        "`git bundle verify`, hashing each bundle, the upload and the listings and manifests "
        "around it. `replicate` makes the bundles one after another, the largest first, and "
        "sends what is made while the rest is made; `rclone copy` sends the repositories' "
        f"files as they are ({floor.seconds:.1f} s)."
    )


def _trace_first(ctx: Context, cloud: Cloud, s3: S3, folder: Path) -> None:
    """Run a first replicate again, into an empty bucket of its own (the replica's local
    record cleared, the secrets kept), with its rclone runs and bundles timed, and say in the
    notes where its time went: measured in this run, not estimated."""
    toml = cloud.data / "bluegrass-cloud.toml"
    saved = toml.read_text()
    for sub in ("state", "work"):
        shutil.rmtree(cloud.data / "replica" / sub, ignore_errors=True)
    toml.write_text(saved.replace(f'bucket = "{REPLICA_BUCKET}"', f'bucket = "{TRACE_BUCKET}"'))
    events = folder / "trace.json"
    script = Path(__file__).with_name("replica_trace.py")
    data.flush()
    ctx.log(f"{BLUEGRASS}: a traced first replicate")
    try:
        run_quiet(
            [sys.executable, str(script), str(events), "--data", str(cloud.data), "replicate"],
            env=clean_env(),
        )
    finally:
        toml.write_text(saved)
    ctx.notes.append(describe_trace(json.loads(events.read_text())))


def describe_trace(trace: dict[str, Any]) -> str:
    """One note from replica_trace.py's events: the first replicate's critical path."""
    events = trace["events"]
    runs = [e for e in events if e["what"] == "rclone"]
    made = sorted((e for e in events if e["what"] == "bundle"), key=lambda e: e["start"])
    main = [e for e in runs if e["thread"] == "MainThread"]
    server = [e for e in runs if e["thread"].startswith("server-area")]
    uploads = sorted(
        (e for e in runs if e not in main and e not in server), key=lambda e: e["start"]
    )
    if not (made and uploads and main):
        return "The traced first replicate sent no bundle: nothing to say where its time goes."
    last_upload = max(e["end"] for e in uploads)
    tail = [e for e in main if e["start"] >= last_upload]
    largest, first = made[0], uploads[0]
    others = made[1:]
    return (
        f"Where a first replicate's time goes, traced in this run (a second first replicate "
        f"of the same data root, after the day's change, into an empty bucket; "
        f"{trace['end']:.1f} s in all; bench/scenarios/replica_trace.py): Python's start "
        f"and imports {trace['imported']:.2f} s; the bucket's raw listing "
        f"{main[0]['end'] - main[0]['start']:.2f} s; the largest bundle "
        f"({megabytes(largest['detail']['size'])} MB) made and hashed in "
        f"{largest['end'] - largest['start']:.2f} s, before any of it can go up; uploads "
        f"from {first['start']:.2f} s to {last_upload:.2f} s ({len(uploads)} `rclone copy` "
        f"runs, the first, with the largest bundle, {first['end'] - first['start']:.2f} s), "
        f"while the other {len(others)} bundles were made beside them "
        f"({sum(e['end'] - e['start'] for e in others):.2f} s, done at "
        f"{made[-1]['end']:.2f} s); then the user's manifest and the listing that checks "
        f"it, {sum(e['end'] - e['start'] for e in tail):.2f} s ({len(tail)} rclone runs). "
        f"The server's state went up beside the bundles ({len(server)} rclone runs, "
        f"{sum(e['end'] - e['start'] for e in server):.2f} s)."
    )


def _bundles_alone(ctx: Context, repos: Path, dest: Path, logs: Path, repo_bytes: int) -> Row:
    """What the first replicate's bundles cost by themselves: `git bundle create --all` of
    each repository, nothing verified, hashed or sent (to tell where its time goes)."""
    env = clean_env(GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1")
    dest.mkdir()
    data.flush()
    parts = [
        measure(
            [
                "git",
                "--git-dir",
                str(repos / f"{_segment_name(i)}.git"),
                "bundle",
                "create",
                "--quiet",
                str(dest / f"{i}.bundle"),
                "--all",
            ],
            log_dir=logs,
            name=f"bundle-{i}",
            env=env,
            timeout=ctx.step_timeout,
        )
        for i in range(SEGMENTS)
    ]
    m = combine(parts)
    size = data.dir_size(dest)
    shutil.rmtree(dest, ignore_errors=True)
    ctx.log(f"{BUNDLES_ALONE}: {m.seconds:.2f} s, {megabytes(size)} MB of bundles")
    return _row(
        BUNDLES_ALONE,
        STEP_FIRST,
        m,
        repo_bytes,
        None,
        f"not an upload: the bundles bluegrass makes ({megabytes(size)} MB), written to local disk",
    )


def _rebuild(
    ctx: Context,
    cloud: Cloud,
    folder: Path,
    logs: Path,
    repos: Path,
    heads: dict[str, str],
    repo_bytes: int,
) -> list[Row]:
    env = clean_env(GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1")
    clones = folder / "clones"
    clones.mkdir()
    parts = []
    data.flush()
    ctx.log(f"{CLONE}: {STEP_REBUILD}")
    for name in heads:
        parts.append(
            measure(
                ["git", "clone", "-q", f"file://{repos / f'{name}.git'}", str(clones / name)],
                log_dir=logs,
                name=f"clone-{name}",
                env=env,
                timeout=ctx.step_timeout,
            )
        )
    clone = combine(parts)
    ctx.log(f"{CLONE}: {clone.seconds:.2f} s, peak RSS {megabytes(clone.peak_rss)} MB")
    shutil.rmtree(clones, ignore_errors=True)

    target = folder / "rebuilt"
    (target / "replica").mkdir(parents=True, mode=0o700)
    target.chmod(0o700)
    shutil.copy2(cloud.data / "bluegrass-cloud.toml", target / "bluegrass-cloud.toml")
    shutil.copy2(cloud.data / "replica" / "admin.json", target / "replica" / "admin.json")
    cmd = [
        venv_program("bluegrass-cloud"),
        "--data",
        str(target),
        "rebuild",
        "--from-replica",
        "--json",
    ]
    m = _timed(ctx, BLUEGRASS, STEP_REBUILD, cmd, logs, clean_env())
    got = _heads(target / "repos" / USER)
    if got != heads:
        wrong = [s for s in heads if got.get(s) != heads[s]]
        ctx.problem(f"{BLUEGRASS}, {STEP_REBUILD}: main differs from the cloud's in {wrong}")
    live = data.tree_stats(target / "files" / USER)
    return [
        _row(CLONE, STEP_REBUILD, clone, repo_bytes, None, f"{len(heads)} clones"),
        _row(
            BLUEGRASS,
            STEP_REBUILD,
            m,
            repo_bytes,
            None,
            f"{len(heads)} histories at the cloud's heads; {live.files:,} live files",
        ),
    ]


def targets(ctx: Context, rows: list[Row]) -> list[Target]:
    found = {(r.tool, r.step): r for r in rows}
    result = []
    floor, bg = found.get((FLOOR, STEP_FIRST)), found.get((BLUEGRASS, STEP_FIRST))
    if floor and bg and floor.rate and bg.rate:
        share = bg.rate / floor.rate
        if share < TARGET_THROUGHPUT and not ctx.quick and GAP not in ctx.notes:
            ctx.notes.append(GAP)
        result.append(
            Target(
                f"first replicate ≥ {TARGET_THROUGHPUT}× the throughput of `rclone copy`",
                f"{bg.rate / 1e6:.1f} MB/s vs {floor.rate / 1e6:.1f} MB/s = {share:.2f}×",
                share >= TARGET_THROUGHPUT,
            )
        )
    nothing = found.get((BLUEGRASS, STEP_NOTHING))
    if nothing and nothing.seconds is not None:
        result.append(
            Target(
                f"replicate with nothing new ≤ {TARGET_NOTHING_SECONDS:g} s for {SEGMENTS} "
                "segments",
                f"{nothing.seconds:.2f} s",
                nothing.seconds <= TARGET_NOTHING_SECONDS,
            )
        )
    day = found.get((BLUEGRASS, STEP_DAY))
    fresh = _fresh.get(id(ctx))
    if day and day.size is not None and fresh:
        share = day.size / fresh
        result.append(
            Target(
                f"a day's 1% change uploads ≤ {TARGET_DAY_SIZE}× the size of the new objects",
                f"{megabytes(day.size)} MB for {megabytes(fresh)} MB = {share:.2f}×",
                share <= TARGET_DAY_SIZE,
            )
        )
    return result
