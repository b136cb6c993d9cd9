"""Scenario "logins": what one sync endpoint login costs, and many at once (issue 13, item 7).

rclone serve sftp runs its --auth-proxy program once per login attempt, with no limit. This
scenario runs that program exactly as rclone does (the same argument list, BLUEGRASS_DATA,
rclone's JSON on stdin) against a real `bluegrass-cloud run`, whose resident login checker
decides: once at a time, then N at once. For comparison it runs the old in-process proxy
(`python -m bluegrass.cloud.authproxy`, one whole Python with the accounts code and its own
argon2 check per login, kept for this purpose) on the same data root the same ways.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bluegrass.cloud import authproxy
from bluegrass.cloud.endpoint import authproxy_command
from bluegrass.core import enrollment

from bench.lib.context import Context
from bench.lib.measure import CommandFailed
from bench.lib.report import Row, Target, megabytes, project_revision
from bench.lib.servers import Cloud
from bench.lib.tools import clean_env

TITLE = (
    "Logins: one sync endpoint login, and N logins at once, through the per-login program "
    "rclone runs; the resident login checker against the old in-process proxy"
)
USES_TOOLS = False
COLUMNS = ["tool", "step", "seconds", "p50", "p95", "peak_rss", "note"]
HEADERS = {"tool": "per-login program", "seconds": "wall (s)", "peak_rss": "peak RSS (MB)"}

USER = "bench"
CLIENT = "checker client"
OLD = "old in-process proxy"
TARGET_ONE_RSS = 16e6  # the issue measured 31 MB a login
TARGET_BURST_SECONDS = 8.8  # the slowest of 40 logins at once before the fix


@dataclass(frozen=True)
class Sizes:
    sequential: int  # logins one after another, per program
    burst: int  # logins at once


FULL = Sizes(20, 40)
QUICK = Sizes(5, 20)


@dataclass(frozen=True)
class Login:
    seconds: float
    max_rss: int  # bytes, the process's own peak (GNU time's %M)
    accepted: bool
    reason: str


def versions(ctx: Context) -> dict[str, str]:
    return {"bluegrass": project_revision(("core", "cloud"))}


def describe_method(ctx: Context) -> list[str]:
    s = QUICK if ctx.quick else FULL
    gate = authproxy.Gate()
    return [
        "`bluegrass-cloud run` on loopback with one user and one device; each login is the "
        "device's real password, from an address of its own (so no lock-out interferes).",
        f"{CLIENT}: `{' '.join(Path(a).name for a in authproxy_command())}` (what `run` gives "
        "rclone as --auth-proxy), asking the checker in `run` over DATA/run/auth.sock. "
        f"{OLD}: `python -m bluegrass.cloud.authproxy`, deciding in its own process.",
        "Each login's time is from spawning the program to its exit; its memory is its own "
        "peak RSS from GNU time (`%M`), since these processes live a fraction of a second. "
        "For a burst, the peak RSS is the sum of the processes' peaks (an upper bound of the "
        "moment's total), plus, for the checker, the growth of `run`'s own RSS.",
        f"One login: {s.sequential} logins one after another, median (p50/p95 over them). "
        f"At once: {s.burst} logins started together; the checker runs {gate.slots} argon2 "
        f"checks at a time and queues {gate.waiting} more for up to {gate.wait:g} s, and "
        "refuses the rest at once as busy (not counted as failures); the old proxy had no "
        "bound.",
    ]


def run(ctx: Context) -> list[Row]:
    timer = shutil.which("time", path="/usr/bin:/bin")
    if timer is None:
        raise CommandFailed("GNU time (/usr/bin/time) is needed to measure each login's memory")
    s = QUICK if ctx.quick else FULL
    folder = ctx.run_dir("logins")
    cloud = Cloud(folder / "cloud", ctx.log)
    cloud.init()
    code = enrollment.decode(cloud.add_user(USER))
    (cloud.data / "files" / USER / "docs").mkdir(parents=True, exist_ok=True)
    cloud.start()
    rows: list[Row] = []
    try:
        programs = {
            CLIENT: authproxy_command(),
            OLD: [sys.executable, "-m", "bluegrass.cloud.authproxy"],
        }
        counter = iter(range(1, 1 << 16))
        for name, argv in programs.items():
            ctx.log(f"logins: {s.sequential} one after another, {name}")
            one = [
                _login(timer, argv, cloud.data, code.password, next(counter), folder)
                for _ in range(s.sequential)
            ]
            rows.append(_one_row(ctx, name, one))
        for name, argv in programs.items():
            ctx.log(f"logins: {s.burst} at once, {name}")
            before = _rss(_pid(cloud))
            with _Peak(_pid(cloud)) as checker:
                with ThreadPoolExecutor(s.burst) as pool:
                    started = time.perf_counter()
                    burst = list(
                        pool.map(
                            lambda n, a=argv: _login(
                                timer, a, cloud.data, code.password, n, folder
                            ),
                            [next(counter) for _ in range(s.burst)],
                        )
                    )
                    wall = time.perf_counter() - started
            growth = max(checker.peak - before, 0) if name == CLIENT else 0
            rows.append(_burst_row(ctx, name, burst, wall, growth))
    finally:
        cloud.stop()
        if not ctx.keep:
            shutil.rmtree(folder, ignore_errors=True)
    return rows


def _pid(cloud: Cloud) -> int:
    assert cloud.proc is not None
    return cloud.proc.pid


def _login(timer: str, argv: list[str], data: Path, password: str, n: int, folder: Path) -> Login:
    """One login as rclone makes it; GNU time reports the program's own peak RSS."""
    ip = f"127.0.{100 + n // 250}.{1 + n % 250}"
    request = json.dumps({"client_ip": ip, "pass": password, "user": USER})
    report = folder / f"time-{n}.txt"
    env = clean_env(BLUEGRASS_DATA=str(data))
    started = time.perf_counter()
    proc = subprocess.run(
        [timer, "-f", "%M", "-o", str(report), *argv],
        input=request.encode(),
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )
    seconds = time.perf_counter() - started
    try:
        max_rss = int(report.read_text().split()[-1]) * 1024
    except (OSError, ValueError, IndexError):
        raise CommandFailed(f"GNU time wrote no peak for login {n}: {report}") from None
    reason = proc.stderr.decode(errors="replace").strip().rsplit("refused: ", 1)[-1]
    if proc.returncode not in (0, 1):
        raise CommandFailed(f"{' '.join(argv)} exited {proc.returncode}: {reason}")
    return Login(seconds, max_rss, proc.returncode == 0, "" if proc.returncode == 0 else reason)


def _one_row(ctx: Context, name: str, logins: list[Login]) -> Row:
    refused = [x for x in logins if not x.accepted]
    if refused:
        ctx.problem(
            f"{name}: {len(refused)} of {len(logins)} sequential logins refused: "
            f"{refused[0].reason}"
        )
    times = sorted(x.seconds for x in logins)
    return Row(
        name,
        f"one login (×{len(logins)}, one after another)",
        statistics.median(times),
        peak_rss=max(x.max_rss for x in logins),
        p50=statistics.median(times),
        p95=times[min(len(times) - 1, round(0.95 * (len(times) - 1)))],
        note=f"{len(logins) - len(refused)} accepted",
    )


def _burst_row(ctx: Context, name: str, logins: list[Login], wall: float, growth: int) -> Row:
    accepted = [x for x in logins if x.accepted]
    busy = [x for x in logins if not x.accepted and x.reason.startswith("busy")]
    other = [x for x in logins if not x.accepted and not x.reason.startswith("busy")]
    if other:
        ctx.problem(f"{name}: {len(other)} logins refused for another reason: {other[0].reason}")
    times = sorted(x.seconds for x in logins)
    note = f"{len(accepted)} accepted, {len(busy)} refused as busy"
    if name == CLIENT:
        note += f"; `run` grew by {megabytes(growth)} MB"
    return Row(
        name,
        f"{len(logins)} logins at once",
        wall,
        peak_rss=sum(x.max_rss for x in logins) + growth,
        p50=statistics.median(times),
        p95=times[min(len(times) - 1, round(0.95 * (len(times) - 1)))],
        note=note + f"; slowest {times[-1]:.2f} s",
    )


def targets(ctx: Context, rows: list[Row]) -> list[Target]:
    found = {(r.tool, r.step.split(" (")[0]): r for r in rows}
    one = found.get((CLIENT, "one login"))
    burst = next((r for r in rows if r.tool == CLIENT and "at once" in r.step), None)
    result = []
    if one is not None and one.peak_rss is not None:
        result.append(
            Target(
                f"one login's program under {megabytes(int(TARGET_ONE_RSS))} MB (was 31 MB)",
                f"{megabytes(one.peak_rss)} MB",
                one.peak_rss < TARGET_ONE_RSS,
            )
        )
    if burst is not None and burst.p95 is not None:
        result.append(
            Target(
                f"{burst.step}: every login answered (accepted or busy) well within "
                f"{TARGET_BURST_SECONDS} s",
                f"{burst.seconds:.2f} s for all (slowest login "
                f"{burst.note.rsplit('slowest ', 1)[-1]})",
                burst.seconds is not None and burst.seconds < TARGET_BURST_SECONDS,
            )
        )
    return result


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class _Peak:
    """The largest RSS of one process (`run`, where the checker lives) while a burst runs."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = _rss(pid)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, _rss(self.pid))
            self._done.wait(0.01)  # the sampling period

    def __enter__(self) -> _Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, _rss(self.pid))
