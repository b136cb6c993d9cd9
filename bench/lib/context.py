"""What a scenario gets from the runner: where to work, which mode, which tools, a log."""

from __future__ import annotations

import os
import resource
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.lib.tools import ALL_TOOLS, Tool


def _own_cpu() -> float:
    """CPU seconds used by this harness and every process it started and reaped."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


@dataclass(frozen=True)
class CpuMark:
    wall: float
    busy: float  # machine-wide busy CPU seconds
    steal: float
    own: float

    @classmethod
    def now(cls) -> CpuMark:
        t = psutil.cpu_times()
        busy = t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
        return cls(time.monotonic(), busy, getattr(t, "steal", 0.0), _own_cpu())


@dataclass
class Context:
    work: Path  # bench/work by default; git-ignored
    quick: bool
    tools: list[type[Tool]]
    keep: bool = False  # keep each tool's repositories and trees after the run
    # --subset N: scenarios that support it (sync, mirror) use N files of the Linux tree.
    subset: int | None = None
    started: float = field(default_factory=time.monotonic)
    # Things a reader of the results must know (method details, tool warnings).
    notes: list[str] = field(default_factory=list)
    # Checks that failed: a tool did not store what it was given. The run exits non-zero.
    problems: list[str] = field(default_factory=list)
    # Lines for the section header (data description), filled by the scenario.
    data_description: list[str] = field(default_factory=list)
    cpu_start: CpuMark = field(default_factory=CpuMark.now)

    def other_cpu(self) -> tuple[float, float]:
        """(share of the machine's CPU used by processes not started here, share stolen by
        the hypervisor) since the run started: how far to trust the times."""
        end = CpuMark.now()
        capacity = (end.wall - self.cpu_start.wall) * (os.cpu_count() or 1)
        if capacity <= 0:
            return 0.0, 0.0
        other = (end.busy - self.cpu_start.busy) - (end.own - self.cpu_start.own)
        return max(other, 0.0) / capacity, (end.steal - self.cpu_start.steal) / capacity

    @property
    def step_timeout(self) -> float:
        """How long one timed step may take before it fails the run (sync, mirror, browse):
        a quick step takes seconds, so minutes mean something is broken, not slow."""
        return 300.0 if self.quick else 3600.0

    @property
    def cache(self) -> Path:
        return self.work / "cache"

    def run_dir(self, scenario: str) -> Path:
        """A fresh folder for one scenario's run; the previous run's is removed first."""
        path = self.work / "runs" / scenario
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path

    def log(self, message: str) -> None:
        elapsed = time.monotonic() - self.started
        sys.stderr.write(f"[bench {elapsed:6.1f}s] {message}\n")
        sys.stderr.flush()

    def problem(self, message: str) -> None:
        self.problems.append(message)
        self.log(f"PROBLEM: {message}")

    def uses(self, name: str) -> bool:
        return any(t.name == name for t in self.tools)


def tool_names() -> list[str]:
    return [t.name for t in ALL_TOOLS]
