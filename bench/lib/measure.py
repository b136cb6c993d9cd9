"""Running a command while timing it and sampling the memory of its whole process tree.

Backup tools are rarely one process: bluegrass-cloud runs several `git hash-object`, git runs
`pack-objects`, and so on. What a machine has to provide is the sum over the tree at its
worst moment, so the tree is sampled every ~20 ms and the largest sum is kept. Two numbers:

- RSS: resident memory summed over the tree. Shared pages (libraries, the same file mapped
  by two processes) count once per process, so this overstates a little; it is the
  conservative number the targets use.
- anon RSS (`RssAnon` in /proc/<pid>/status): private heap and stack only, without mapped
  files. A tool that mmaps the files it reads shows a large RSS but a small anon RSS; the
  page cache would hold those pages anyway.

A process that lives less than one sampling interval can be missed by the sampler; the
kernel's own per-process peak (wait4's ru_maxrss, the largest single process in the tree)
is kept as a floor for the peak where it can be told apart from the harness's own memory
(see _single_peak), so a short spike of one large process is not lost.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

SAMPLE_INTERVAL = 0.02
# A hung tool should fail the run, not block it forever; the slowest step on the Linux tree
# takes about a minute.
DEFAULT_TIMEOUT = 3600.0


class CommandFailed(RuntimeError):
    """A measured command exited with an unexpected status; the message names its log."""


@dataclass
class Measurement:
    seconds: float
    peak_rss: int  # bytes
    peak_anon: int | None  # bytes; None where /proc has no RssAnon
    returncode: int = 0
    stdout: Path | None = None
    stderr: Path | None = None
    samples: int = 0

    def output(self) -> str:
        return self.stdout.read_text(errors="replace") if self.stdout else ""


def combine(parts: Sequence[Measurement]) -> Measurement:
    """One step made of commands run one after another: times add up, peaks do not."""
    anon = [p.peak_anon for p in parts if p.peak_anon is not None]
    return Measurement(
        seconds=sum(p.seconds for p in parts),
        peak_rss=max((p.peak_rss for p in parts), default=0),
        peak_anon=max(anon) if anon else None,
        returncode=parts[-1].returncode if parts else 0,
        stdout=parts[-1].stdout if parts else None,
        stderr=parts[-1].stderr if parts else None,
        samples=sum(p.samples for p in parts),
    )


_HAS_PROC_CHILDREN = Path(f"/proc/self/task/{os.getpid()}/children").exists()


def _tree(pid: int) -> list[int]:
    """`pid` and all its descendants.

    /proc/<pid>/task/<tid>/children is read directly when the kernel has it: it touches only
    the tree, where psutil's children() scans every process on the machine (1–2 ms a call,
    several percent of a core at 50 samples a second, taken from the tool being measured).
    """
    if not _HAS_PROC_CHILDREN:
        try:
            proc = psutil.Process(pid)
            return [pid, *(c.pid for c in proc.children(recursive=True))]
        except psutil.Error:
            return [pid]
    pids = [pid]
    i = 0
    while i < len(pids):
        parent = pids[i]
        i += 1
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue  # exited between two reads
        for tid in tasks:
            # A child forked by a thread (a thread pool starting git) is listed under that
            # thread, not under the main one.
            try:
                with open(f"/proc/{parent}/task/{tid}/children") as f:
                    pids.extend(int(x) for x in f.read().split())
            except OSError:
                continue
    return pids


def _memory(pid: int) -> tuple[int, int | None]:
    """(RSS, anon RSS) of one process in bytes; zeros for a process that is gone."""
    rss = 0
    anon: int | None = None
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith("RssAnon:"):
                    anon = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        try:
            return psutil.Process(pid).memory_info().rss, None
        except psutil.Error:
            return 0, None
    return rss, anon


class _Sampler(threading.Thread):
    def __init__(self, pid: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.done = threading.Event()
        self.peak_rss = 0
        self.peak_anon: int | None = None
        self.samples = 0

    def run(self) -> None:
        # The main thread reaps the child with wait4 and then sets `done`; this thread must
        # never poll() the child itself, or it could reap it first and lose its rusage.
        while not self.done.is_set():
            total_rss = 0
            total_anon: int | None = None
            for pid in _tree(self.pid):
                rss, anon = _memory(pid)
                total_rss += rss
                if anon is not None:
                    total_anon = (total_anon or 0) + anon
            self.peak_rss = max(self.peak_rss, total_rss)
            if total_anon is not None:
                self.peak_anon = max(self.peak_anon or 0, total_anon)
            self.samples += 1
            self.done.wait(self.interval)


def measure(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    log_dir: Path,
    name: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    ok_codes: Sequence[int] = (0,),
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = SAMPLE_INTERVAL,
) -> Measurement:
    """Run `cmd`, return its wall time and peak memory; raise CommandFailed on a bad exit.

    Output goes to files under `log_dir` (never pipes: a chatty tool would block on a full
    pipe, and reading it here would cost the harness time inside the measurement).
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    out_path = log_dir / f"{name}.out"
    err_path = log_dir / f"{name}.err"
    argv = [os.fspath(c) for c in cmd]
    with out_path.open("wb") as out, err_path.open("wb") as err:
        start = time.perf_counter()
        # Its own session, so a timeout or Ctrl-C can stop the whole tree it started.
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
        sampler = _Sampler(proc.pid, interval)
        sampler.start()
        try:
            status, usage = _wait4(proc.pid, timeout)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(proc.pid, 0)
            proc.returncode = -9
            raise
        finally:
            sampler.done.set()
            sampler.join()
        seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    result = Measurement(
        seconds=seconds,
        peak_rss=max(sampler.peak_rss, _single_peak(usage)),
        peak_anon=sampler.peak_anon,
        returncode=proc.returncode,
        stdout=out_path,
        stderr=err_path,
        samples=sampler.samples,
    )
    if proc.returncode not in ok_codes:
        tail = err_path.read_text(errors="replace").strip().splitlines()[-3:]
        raise CommandFailed(
            f"{' '.join(argv)} exited {proc.returncode} (log: {err_path})"
            + (": " + " | ".join(tail) if tail else "")
        )
    return result


def _single_peak(usage: resource.struct_rusage) -> int:
    """The largest single process's peak RSS from wait4, or 0 when it cannot be told apart.

    Linux carries the forking process's high-water RSS over into the child across exec, so
    the child's ru_maxrss is never below this harness's own peak. Only a value above that is
    the child's own; anything else is the harness and is ignored.
    """
    single = usage.ru_maxrss * 1024  # kB on Linux
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return single if single > own else 0


def _wait4(pid: int, timeout: float) -> tuple[int, resource.struct_rusage]:
    """Reap `pid` with its resource usage, killing its process group after `timeout`.

    A blocking wait4 returns the moment the process exits (polling would add its interval
    to every time measured); a timer thread does the killing.
    """
    expired = threading.Event()

    def kill() -> None:
        expired.set()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)

    timer = threading.Timer(timeout, kill)
    timer.daemon = True
    timer.start()
    try:
        _, status, usage = os.wait4(pid, 0)
    finally:
        timer.cancel()
    if expired.is_set():
        raise CommandFailed(f"process {pid} timed out after {timeout:.0f} s and was killed")
    return status, usage


def run_quiet(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    ok_codes: Sequence[int] = (0,),
) -> subprocess.CompletedProcess[bytes]:
    """An unmeasured helper command (setup, checks); raises CommandFailed on a bad exit."""
    argv = [os.fspath(c) for c in cmd]
    proc = subprocess.run(
        argv,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if proc.returncode not in ok_codes:
        message = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise CommandFailed(
            f"{' '.join(argv)} exited {proc.returncode}: " + " | ".join(message or ["no output"])
        )
    return proc


class TreeSampler:
    """The memory of a long-lived process tree (a server, a daemon), sampled in the
    background for as long as it runs; `window` sums up any stretch of that time.

    Used where a process is not started and reaped per step (measure() covers that), but
    watched while other things happen: a daemon idling, then mirroring; a web server
    answering requests.
    """

    def __init__(self, pid: int, interval: float = SAMPLE_INTERVAL) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int, int | None]] = []  # (monotonic, rss, anon)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._done.is_set():
            total_rss = 0
            total_anon: int | None = None
            for pid in _tree(self.pid):
                rss, anon = _memory(pid)
                total_rss += rss
                if anon is not None:
                    total_anon = (total_anon or 0) + anon
            if total_rss:
                self.samples.append((time.monotonic(), total_rss, total_anon))
            self._done.wait(self.interval)

    def window(self, since: float, until: float | None = None) -> TreeWindow:
        """What the samples taken between two monotonic times say."""
        end = time.monotonic() if until is None else until
        picked = [(rss, anon) for t, rss, anon in self.samples if since <= t <= end]
        if not picked:
            raise CommandFailed(
                f"no memory samples of process {self.pid} between {since:.1f} and {end:.1f}"
            )
        rss = sorted(r for r, _ in picked)
        anon = sorted(a for _, a in picked if a is not None)
        return TreeWindow(
            peak_rss=rss[-1],
            peak_anon=anon[-1] if anon else None,
            median_rss=rss[len(rss) // 2],
            median_anon=anon[len(anon) // 2] if anon else None,
            samples=len(rss),
        )


@dataclass
class TreeWindow:
    peak_rss: int
    peak_anon: int | None
    median_rss: int
    median_anon: int | None
    samples: int
