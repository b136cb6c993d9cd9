"""bluegrass.core.supervise with real child processes (small Python programs).

Readiness is always a line the child writes once it really is ready (a socket bound, a signal
handler installed); nothing here sleeps in the hope that a child got somewhere.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from bluegrass.core import supervise
from bluegrass.core.supervise import Backoff, Child

posix_only = pytest.mark.skipif(os.name != "posix", reason="process groups are POSIX")


class Lines(list[str]):
    """The log: every line the child's stderr produced, as the supervisor logged it."""

    def __call__(self, line: str) -> None:
        self.append(line)


def python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code), *args]


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def children() -> Iterator[list[Child]]:
    """Children a test started; whatever a failed test left running is stopped."""
    started: list[Child] = []
    yield started
    for child in started:
        child.stop_timeout = 1.0
        child.stop()


def make(
    children: list[Child], ready: str = "ready", stop_timeout: float = 10.0
) -> tuple[Child, Lines]:
    log = Lines()
    child = Child("t", log, re.compile(ready).search, stop_timeout)
    children.append(child)
    return child, log


# A child that does what a server does: prints a line or two, says it is ready, and runs
# until a signal stops it.
SERVER = """
    import signal, sys
    print("starting", file=sys.stderr, flush=True)
    print("", file=sys.stderr, flush=True)
    sys.stderr.buffer.write(b"bad \\xff byte\\n")
    sys.stderr.flush()
    print("ready", file=sys.stderr, flush=True)
    signal.pause()
"""


def test_start_logs_stderr_lines_and_becomes_ready(children: list[Child], tmp_path: Path) -> None:
    child, log = make(children)
    child.start(python(SERVER), cwd=tmp_path)
    assert child.wait_ready(10)
    assert child.ready.is_set() and child.poll() is None and child.pid is not None
    wait_until(lambda: child.last_line == "ready", "the last line")
    # Blank lines are dropped, undecodable bytes replaced, each line prefixed by the name.
    assert log == ["t: starting", "t: bad \ufffd byte", "t: ready"]
    assert child.stop() == -signal.SIGTERM
    assert gone(child.pid)


def test_an_argument_list_an_environment_and_a_folder(
    children: list[Child], tmp_path: Path
) -> None:
    # Never a shell: a space, a `$` and a `;` reach the program as they are.
    odd = "a b $HOME; echo no"
    code = """
        import os, sys
        print(f"argv={sys.argv[1:]!r} cwd={os.getcwd()} x={os.environ.get('X')!r}",
              file=sys.stderr, flush=True)
        print("ready", file=sys.stderr, flush=True)
    """
    child, log = make(children)
    child.start(python(code, odd), env={**os.environ, "X": "42"}, cwd=tmp_path)
    assert child.wait_ready(10)
    wait_until(lambda: child.poll() is not None, "the child to exit")
    assert child.stop() == 0
    assert log[0] == f"t: argv={[odd]!r} cwd={tmp_path} x='42'"


def test_a_probe_can_read_a_port_from_the_ready_line(children: list[Child]) -> None:
    code = """
        import signal, socket, sys
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen()
        print(f"Listening at: 127.0.0.1:{server.getsockname()[1]} (pid)", file=sys.stderr,
              flush=True)
        print("Listening at: 127.0.0.1:1 (a second line is not asked)", file=sys.stderr,
              flush=True)
        signal.pause()
    """
    ports: list[int] = []

    def listening(line: str) -> bool:
        found = re.search(r"Listening at: \S+?:(\d+) ", line)
        if found:
            ports.append(int(found.group(1)))
        return found is not None

    child = Child("panel", Lines(), listening, 10.0)
    children.append(child)
    child.start(python(code))
    assert child.wait_ready(10)
    socket.create_connection(("127.0.0.1", ports[0]), timeout=5).close()
    assert child.stop() == -signal.SIGTERM
    assert ports[:1] == ports  # asked until ready, not after


def test_a_child_that_exits_first_is_not_ready_and_its_last_words_are_kept(
    children: list[Child],
) -> None:
    child, _ = make(children)
    child.start(python('import sys; print("fatal: port in use", file=sys.stderr); sys.exit(3)'))
    began = time.monotonic()
    assert not child.wait_ready(30)
    assert time.monotonic() - began < 10  # noticed the exit, did not wait for the timeout
    assert child.poll() == 3 and child.last_line == "fatal: port in use"
    assert child.stop() == 3


def test_no_ready_line_times_out_and_a_stop_event_ends_the_wait(children: list[Child]) -> None:
    child, _ = make(children, ready="never")
    child.start(python(SERVER))
    wait_until(lambda: child.last_line == "ready", "the child's output")
    began = time.monotonic()
    assert not child.wait_ready(0.5)
    assert 0.5 <= time.monotonic() - began < 5
    stop = threading.Event()
    stop.set()
    assert not child.wait_ready(30, stop)
    assert child.poll() is None
    assert child.stop() == -signal.SIGTERM


def test_stop_of_a_child_never_started_or_already_stopped(children: list[Child]) -> None:
    child, _ = make(children)
    assert child.stop() is None and child.pid is None and child.poll() is None
    child.start(python(SERVER))
    assert child.wait_ready(10)
    assert child.stop() == -signal.SIGTERM
    assert child.stop() == -signal.SIGTERM  # again: nothing to do, the same answer


# A parent that starts a grandchild (as gunicorn starts workers), both ignoring SIGTERM when
# IGNORE is set, and says ready with the grandchild's pid once both handlers are in place.
FAMILY = """
    import signal, subprocess, sys
    ignore = sys.argv[1] == "ignore"
    grandchild = (
        "import signal, sys\\n"
        "if sys.argv[1] == 'ignore':\\n"
        "    signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n"
        "print('up', flush=True)\\n"
        "signal.pause()\\n"
    )
    if ignore:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    worker = subprocess.Popen([sys.executable, "-c", grandchild, sys.argv[1]],
                              stdout=subprocess.PIPE)
    worker.stdout.readline()
    print(f"ready {worker.pid}", file=sys.stderr, flush=True)
    signal.pause()
"""


def _worker(child: Child) -> int:
    return int(child.last_line.split()[1])


@posix_only
def test_stop_terminates_the_whole_process_group(children: list[Child]) -> None:
    child, _ = make(children)
    child.start(python(FAMILY, "obey"))
    assert child.wait_ready(10)
    assert child.pid is not None and os.getpgid(child.pid) == child.pid  # its own group
    worker = _worker(child)
    assert os.getpgid(worker) == child.pid
    began = time.monotonic()
    assert child.stop() == -signal.SIGTERM
    assert time.monotonic() - began < 5
    wait_until(lambda: gone(worker), "the grandchild to be stopped with its group")


@posix_only
def test_a_child_ignoring_sigterm_is_killed_after_the_grace_period(
    children: list[Child],
) -> None:
    child, _ = make(children, stop_timeout=0.5)
    child.start(python(FAMILY, "ignore"))
    assert child.wait_ready(10)
    worker = _worker(child)
    began = time.monotonic()
    assert child.stop() == -signal.SIGKILL
    assert time.monotonic() - began >= 0.5  # SIGTERM first, SIGKILL only after the grace
    wait_until(lambda: gone(worker), "the grandchild to be killed with its group")


@posix_only
def test_without_process_groups_only_the_child_is_signalled(
    children: list[Child], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The path taken where os.killpg does not exist (Windows): terminate(), then kill().
    monkeypatch.setattr(supervise, "POSIX", False)
    child, _ = make(children, stop_timeout=0.5)
    child.start(python(FAMILY, "ignore"))
    assert child.wait_ready(10)
    assert child.pid is not None and os.getpgid(child.pid) == os.getpgid(0)
    worker = _worker(child)
    try:
        assert child.stop() == -signal.SIGKILL
        assert not gone(worker)  # not in a group of its own: out of reach
    finally:
        os.kill(worker, signal.SIGKILL)


def test_a_child_that_dies_is_started_again_with_a_growing_delay(
    children: list[Child], tmp_path: Path
) -> None:
    # Ready, then exits with 7 once the test creates the file `die`: a server that crashes.
    code = """
        import os, sys, time
        print(f"ready {os.getpid()}", file=sys.stderr, flush=True)
        while not os.path.exists("die"):
            time.sleep(0.01)
        print("dying", file=sys.stderr, flush=True)
        sys.exit(7)
    """
    child, log = make(children)
    backoff = Backoff(first=0.1, most=0.2, stable=60.0)
    pids, delays = [], []
    for _ in range(3):
        (tmp_path / "die").unlink(missing_ok=True)
        child.start(python(code), cwd=tmp_path)
        assert child.wait_ready(10) and child.last_line.startswith("ready")
        pids.append(child.pid)
        (tmp_path / "die").touch()
        wait_until(lambda: child.poll() is not None, "the child to exit")
        assert child.stop() == 7 and child.last_line == "dying"
        delays.append(backoff.next(child.started))
    assert len(set(pids)) == 3 and log.count("t: dying") == 3
    assert delays == [0.1, 0.2, 0.2]  # doubled, capped, never reset (no run was stable)
    # A new run starts unready: the last run's ready line does not count for it.
    child.start(python("import signal; signal.pause()"))
    assert child.last_line == "" and not child.wait_ready(0.3)
    assert child.stop() == -signal.SIGTERM


def test_backoff_doubles_caps_and_resets_after_a_stable_run() -> None:
    backoff = Backoff()
    assert [backoff.next() for _ in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    now = time.monotonic()
    assert backoff.next(now - 10) == 60  # a short run: still backing off
    assert backoff.next(now - 61) == 1  # up for over a minute: from the start again
    assert backoff.next(now - 61) == 1
    assert backoff.next(None) == 2  # never came up: never stable
