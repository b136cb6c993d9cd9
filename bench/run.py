"""Run Bluegrass's benchmarks and write their results into docs/benchmarks.md.

    make bench                                   # every scenario, full data
    make bench BENCH_ARGS="--scenario snapshot"  # one scenario
    .venv/bin/python bench/run.py --quick        # a small generated tree, to test the harness

Each scenario is bench/scenarios/<name>.py with `run(ctx) -> list[Row]`, optionally
`targets(ctx, rows) -> list[Target]`, `describe_method(ctx) -> list[str]` and `TITLE`; and,
for a scenario that does not compare the backup tools of --tools (sync, mirror, browse):
`USES_TOOLS = False`, `versions(ctx) -> dict[str, str]` (the versions its section names),
`COLUMNS` (keys of report.COLUMNS) and `HEADERS` (renamed column headers).
Exit status: 0 when every scenario ran and every tool stored what it was given (targets may
still fail: they are results, not errors); 1 when a run went wrong; 2 for a usage problem or
missing data or tool.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

# `python bench/run.py` puts bench/ on sys.path, not the checkout; the harness imports itself
# as the `bench` package so module names cannot clash with anything installed.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.lib import report  # noqa: E402
from bench.lib.context import Context  # noqa: E402
from bench.lib.data import DataError  # noqa: E402
from bench.lib.measure import CommandFailed  # noqa: E402
from bench.lib.tools import ALL_TOOLS, Bluegrass  # noqa: E402

SCENARIO_DIR = ROOT / "bench" / "scenarios"
DEFAULT_OUT = ROOT / "docs" / "benchmarks.md"
DEFAULT_WORK = ROOT / "bench" / "work"
# Above this share of CPU taken by other processes, the section warns that times are noisy.
BUSY_SHARE = 0.10


def scenarios() -> list[str]:
    found = sorted(p.stem for p in SCENARIO_DIR.glob("*.py") if not p.stem.startswith("_"))
    known = [s for s in report.SECTION_ORDER if s in found]
    return known + [s for s in found if s not in known]


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/run.py",
        description="Run Bluegrass's benchmarks and write the results as markdown.",
    )
    p.add_argument(
        "--scenario",
        action="append",
        choices=scenarios(),
        help="a scenario to run (repeatable; default: all)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a small generated tree instead of the Linux sources: tests the harness in "
        "under a minute",
    )
    p.add_argument(
        "--out",
        type=Path,
        help=f"markdown file to write (default: {DEFAULT_OUT.relative_to(ROOT)}; with --quick "
        "WORK/benchmarks-quick.md, so quick numbers never replace real ones by accident)",
    )
    p.add_argument(
        "--work",
        type=Path,
        default=DEFAULT_WORK,
        help="work folder for cached data and runs (default: bench/work, git-ignored)",
    )
    p.add_argument(
        "--tools",
        default=",".join(t.name for t in ALL_TOOLS),
        help="comma-separated tools to compare (default: %(default)s)",
    )
    p.add_argument("--keep", action="store_true", help="keep repositories and trees after the run")
    p.add_argument(
        "--subset",
        type=_positive,
        metavar="N",
        help="sync and mirror only: N files of the Linux tree (every k-th file, hard-linked) "
        "instead of all 78k, for a shorter run on a loaded machine; the section says so",
    )
    return p.parse_args(argv)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def fail(message: str, code: int = 2) -> int:
    sys.stderr.write(f"bench: error: {message}\n")
    return code


def render(
    module: ModuleType,
    ctx: Context,
    rows: list[report.Row],
    targets: list[report.Target],
    command: str,
    versions: dict[str, str],
    minutes: float,
) -> str:
    name = module.__name__.rsplit(".", 1)[-1]
    title = getattr(module, "TITLE", name)
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"## {name}{' (quick mode: not representative)' if ctx.quick else ''}", "", title, ""]
    lines += [f"Produced by `{command}` on {date}, in {minutes:.1f} min.", ""]
    lines += ["Machine: " + "; ".join(report.machine_facts(ctx.work, versions)) + ".", ""]
    other, steal = ctx.other_cpu()
    busy = (
        f"Other processes used {other:.0%} of the machine's CPU during the run"
        f"{f', the hypervisor took {steal:.0%}' if steal >= 0.005 else ''}."
    )
    if other > BUSY_SHARE or steal > BUSY_SHARE:
        busy += (
            " **The machine was busy: times are noisy; compare ratios, or rerun on a quiet one.**"
        )
    lines += [busy, ""]
    lines += [*ctx.data_description, ""] if ctx.data_description else []
    lines += [report.rows_table(rows, *table_layout(module))]
    if targets:
        lines += ["Targets:", "", report.targets_table(targets)]
    method = module.describe_method(ctx) if hasattr(module, "describe_method") else []
    if method:
        lines += ["Method:", ""] + [f"- {m}" for m in method] + [""]
    if ctx.notes:
        lines += ["Notes:", ""] + [f"- {n}" for n in ctx.notes] + [""]
    if ctx.problems:
        lines += ["**Problems (the numbers above are not trustworthy):**", ""]
        lines += [f"- {p}" for p in ctx.problems] + [""]
    return "\n".join(lines)


def table_layout(module: ModuleType) -> tuple[list[str] | None, dict[str, str] | None]:
    return getattr(module, "COLUMNS", None), getattr(module, "HEADERS", None)


def compile_sources() -> None:
    """Byte-compile the checkout, as pip does when it installs a wheel.

    The venv's packages are editable installs of the source folders; with
    PYTHONDONTWRITEBYTECODE set (or a read-only checkout) every measured command would
    otherwise compile its modules from source at each start, which no installed Bluegrass does.
    """
    folders = [
        str(ROOT / d / "src") for d in ("core", "laptop-client", "cloud", "appliance", "panel")
    ]
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", *folders], check=True, stdout=subprocess.DEVNULL
    )


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    wanted = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = [t for t in wanted if t not in {c.name for c in ALL_TOOLS}]
    if unknown:
        return fail(f"unknown tool(s): {', '.join(unknown)}")
    tools = [c for c in ALL_TOOLS if c.name in wanted]
    names = args.scenario or scenarios()
    modules = {name: importlib.import_module(f"bench.scenarios.{name}") for name in names}
    # The backup tools matter only to scenarios that compare them (snapshot).
    tool_scenarios = [n for n, m in modules.items() if getattr(m, "USES_TOOLS", True)]
    if tool_scenarios:
        for cls in tools:
            reason = cls.missing()
            if reason:
                return fail(f"{reason} (or leave {cls.name} out with --tools)")
    work = args.work.resolve()
    out = (args.out or (work / "benchmarks-quick.md" if args.quick else DEFAULT_OUT)).resolve()
    # The command as a reader would type it to reproduce the section.
    command = "make bench" + (f" BENCH_ARGS={shlex.quote(shlex.join(argv))}" if argv else "")
    tool_versions = (
        {cls.binary if cls is not Bluegrass else "bluegrass": cls.version() for cls in tools}
        if tool_scenarios
        else {}
    )
    compile_sources()
    status = 0
    for name, module in modules.items():
        ctx = Context(work=work, quick=args.quick, tools=tools, keep=args.keep, subset=args.subset)
        ctx.log(f"scenario {name}{' (quick)' if args.quick else ''}; work dir {work}")
        if args.subset and not getattr(module, "SUPPORTS_SUBSET", False):
            ctx.log(f"scenario {name} has no --subset: it runs on its usual data")
        versions = module.versions(ctx) if hasattr(module, "versions") else tool_versions
        start = time.monotonic()
        try:
            rows = module.run(ctx)
        except DataError as exc:
            return fail(str(exc))
        except CommandFailed as exc:
            ctx.log(f"scenario {name} failed")
            return fail(f"scenario {name}: {exc}", 1)
        targets = module.targets(ctx, rows) if hasattr(module, "targets") else []
        minutes = (time.monotonic() - start) / 60
        body = render(module, ctx, rows, targets, command, versions, minutes)
        report.write_section(out, name, body)
        results = work / "results"
        results.mkdir(parents=True, exist_ok=True)
        (results / f"{name}{'-quick' if args.quick else ''}.json").write_text(
            json.dumps(
                {
                    "scenario": name,
                    "quick": args.quick,
                    "versions": versions,
                    "rows": [r.to_json() for r in rows],
                    "targets": [t.__dict__ for t in targets],
                    "problems": ctx.problems,
                },
                indent=2,
            )
        )
        print(report.rows_table(rows, *table_layout(module)))
        if targets:
            print(report.targets_table(targets))
        ctx.log(f"scenario {name}: wrote {out}")
        if ctx.problems:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
