"""Result rows, markdown tables, machine facts, and docs/benchmarks.md sections.

Each scenario owns one section of the output file, between two HTML comment markers, so a
run of one scenario rewrites its own section and leaves the others as they were.
"""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from bench.lib.measure import Measurement

ROOT = Path(__file__).resolve().parents[2]
# The order sections appear in; a scenario not listed here goes after these, by name.
SECTION_ORDER = ["snapshot", "sync", "mirror", "browse", "logins", "replica"]
HEADER = """# Benchmarks

Measured by `make bench` (`bench/run.py`); each section below is written by one scenario
(`bench/scenarios/<name>.py`) and rewritten only when that scenario runs again. Sizes and
memory are in MB of 10⁶ bytes; times are wall-clock seconds.
"""


@dataclass
class Row:
    """One measured step of one tool. Empty fields are shown as "—"."""

    tool: str
    step: str
    seconds: float | None = None
    ratio: float | None = None  # seconds / the floor's seconds for the same step
    peak_rss: int | None = None  # bytes, summed over the process tree
    peak_anon: int | None = None  # bytes
    size: int | None = None  # repository bytes (only on the size step)
    size_ratio: float | None = None  # size / the floor's size
    note: str = ""
    # Used by the request-latency and throughput scenarios (browse); left out of the JSON
    # while None, so other scenarios' results keep their shape.
    p50: float | None = None  # seconds
    p95: float | None = None  # seconds
    rate: float | None = None  # bytes per second

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        for key in ("p50", "p95", "rate"):
            if data[key] is None:
                del data[key]
        return data


@dataclass
class Target:
    """A goal from the issue, checked against the measured rows."""

    goal: str
    measured: str
    passed: bool | None  # None: could not be evaluated (a tool was not run)

    @property
    def verdict(self) -> str:
        return {True: "pass", False: "**FAIL**", None: "n/a"}[self.passed]


def measured_row(tool: str, step: str, m: Measurement, note: str = "") -> Row:
    """A row from one measured command."""
    return Row(tool, step, m.seconds, peak_rss=m.peak_rss, peak_anon=m.peak_anon, note=note)


def median_row(tool: str, step: str, runs: Sequence[Measurement]) -> Row:
    """A row from repeated runs of one step: the median time, the largest memory."""
    times = sorted(m.seconds for m in runs)
    anon = [m.peak_anon for m in runs if m.peak_anon is not None]
    return Row(
        tool,
        step,
        statistics.median(times),
        peak_rss=max(m.peak_rss for m in runs),
        peak_anon=max(anon) if anon else None,
        note=f"median of {len(runs)} ({times[0]:.2f}–{times[-1]:.2f} s)",
    )


def add_ratios(
    rows: list[Row],
    floor: str = "floor",
    compare_time_with: dict[str, str] | None = None,
    no_time_ratio: set[str] | None = None,
) -> None:
    """Fill each row's ratios from the floor's row for the same step.

    `compare_time_with` maps a step the floor does not have to the floor step it is
    compared with; `no_time_ratio` lists steps whose times are not comparable across tools.
    """
    base = {r.step: r for r in rows if r.tool == floor}
    for r in rows:
        b = base.get((compare_time_with or {}).get(r.step, r.step))
        if b is None:
            continue
        if r.seconds is not None and b.seconds and r.step not in (no_time_ratio or set()):
            r.ratio = r.seconds / b.seconds
        if r.size is not None and b.size:
            r.size_ratio = r.size / b.size


def seconds(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def megabytes(value: int | None) -> str:
    if value is None:
        return "—"
    mb = value / 1e6
    return f"{mb:.1f}" if mb < 100 else f"{mb:.0f}"


def ratio(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.2f}×" if value >= 0.1 else f"{value:.3f}×"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = [
        "| " + " | ".join(headers) + " |",
        "| " + " | ".join("---" for _ in headers) + " |",
    ]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def milliseconds(value: float | None) -> str:
    if value is None:
        return "—"
    ms = value * 1000
    return f"{ms:.1f}" if ms < 100 else f"{ms:.0f}"


def rate(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value / 1e6:.1f}" if value < 100e6 else f"{value / 1e6:.0f}"


# Every column a results table can have: key -> (default header, how a row shows it).
COLUMNS: dict[str, tuple[str, Callable[[Row], str]]] = {
    "tool": ("tool", lambda r: r.tool),
    "step": ("step", lambda r: r.step),
    "seconds": ("time (s)", lambda r: seconds(r.seconds)),
    "ratio": ("× floor", lambda r: ratio(r.ratio)),
    "peak_rss": ("peak RSS (MB)", lambda r: megabytes(r.peak_rss)),
    "peak_anon": ("peak anon RSS (MB)", lambda r: megabytes(r.peak_anon)),
    "size": ("repo size (MB)", lambda r: megabytes(r.size)),
    "size_ratio": ("size × floor", lambda r: ratio(r.size_ratio)),
    "p50": ("p50 (ms)", lambda r: milliseconds(r.p50)),
    "p95": ("p95 (ms)", lambda r: milliseconds(r.p95)),
    "rate": ("MB/s", lambda r: rate(r.rate)),
    "note": ("note", lambda r: r.note),
}
DEFAULT_COLUMNS = [
    "tool",
    "step",
    "seconds",
    "ratio",
    "peak_rss",
    "peak_anon",
    "size",
    "size_ratio",
    "note",
]


def rows_table(
    rows: Sequence[Row],
    columns: Sequence[str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> str:
    """The results table; `columns` picks and orders columns (keys of COLUMNS), `headers`
    renames some (a scenario whose baseline is not called "floor")."""
    keys = list(columns or DEFAULT_COLUMNS)
    names = [(headers or {}).get(k, COLUMNS[k][0]) for k in keys]
    return table(names, ([COLUMNS[k][1](r) for k in keys] for r in rows))


def targets_table(targets: Sequence[Target]) -> str:
    return table(
        ["target", "measured", "result"], ([t.goal, t.measured, t.verdict] for t in targets)
    )


def _run(cmd: list[str]) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return proc.stdout.strip() if proc.returncode == 0 else "?"


def project_revision(folders: Sequence[str] = ("core", "cloud")) -> str:
    """The commit of this checkout, and whether `folders` (the code a scenario measures)
    differ from it."""
    # GIT_OPTIONAL_LOCKS=0: `git status` must not take the index lock of a checkout someone
    # may be committing in at the same moment.
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", *folders],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        ).stdout.strip()
    except OSError:
        return "?"
    if not head:
        return "?"
    where = " or ".join(f"{f}/" for f in folders)
    return f"{head} + uncommitted changes in {where}" if dirty else head


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _filesystem(path: Path) -> str:
    """The file system type the work dir is on (tmpfs and ext4 give very different times)."""
    best = None
    target = str(path.resolve())
    for part in psutil.disk_partitions(all=True):
        mount = part.mountpoint
        if (target == mount or target.startswith(mount.rstrip("/") + "/")) and (
            best is None or len(mount) > len(best.mountpoint)
        ):
            best = part
    return f"{best.fstype} ({best.device})" if best else "?"


def machine_facts(work: Path, versions: dict[str, str]) -> list[str]:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    facts = [
        f"{cpus} CPUs ({_cpu_model()}), {psutil.virtual_memory().total / 1e9:.1f} GB RAM",
        f"{platform.system()} {platform.release()}, work dir on {_filesystem(work)}",
        f"Python {platform.python_version()}",
    ]
    facts += [f"{name} {version}" for name, version in versions.items()]
    return facts


_SECTION = re.compile(
    r"<!-- bench:(?P<name>[a-z0-9_-]+):begin -->\n.*?<!-- bench:(?P=name):end -->\n", re.S
)


def write_section(out: Path, name: str, body: str) -> None:
    """Put `body` into `out` as the section of scenario `name`, keeping every other section."""
    text = out.read_text() if out.exists() else HEADER
    sections = {m.group("name"): m.group(0) for m in _SECTION.finditer(text)}
    first = _SECTION.search(text)
    head = text[: first.start()] if first else text
    sections[name] = f"<!-- bench:{name}:begin -->\n{body.rstrip()}\n<!-- bench:{name}:end -->\n"

    def order(key: str) -> tuple[int, str]:
        return (SECTION_ORDER.index(key) if key in SECTION_ORDER else len(SECTION_ORDER), key)

    parts = [head.rstrip() + "\n"] + [sections[k] for k in sorted(sections, key=order)]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text("\n".join(parts))
    os.replace(tmp, out)
