"""`make demo` (tools/demo.py) runs the whole pipeline for real and stops cleanly.

The demo is run as a person runs it, in a folder of the test's own (BLUEGRASS_DEMO_DIR): once
with BLUEGRASS_DEMO_EXIT=1, which stops everything once the addresses are printed, and once
left running, signed in to, and stopped with Ctrl-C (SIGINT to its process group).
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from tests.cloud.web import Browser
from tests.conftest import ROOT, require_tool

DEMO = ROOT / "tools" / "demo.py"
TIMEOUT = 240.0
PANEL = re.compile(
    r"The Pi's panel: +(http://127\.0\.0\.1:\d+)/\n +sign in as admin, password (\S+)"
)
CLOUD = re.compile(
    r"The cloud's site: +(http://127\.0\.0\.1:\d+)/\n +sign in as demo, password (\S+)"
)


def start_demo(folder: Path, *, exit_at_once: bool) -> subprocess.Popen[str]:
    for tool in ("git", "ssh-keygen"):
        require_tool(tool)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLUEGRASS_")}
    env["BLUEGRASS_DEMO_DIR"] = str(folder / "demo")
    if exit_at_once:
        env["BLUEGRASS_DEMO_EXIT"] = "1"
    return subprocess.Popen(
        [sys.executable, str(DEMO)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=folder,
        # Its own process group, as a shell gives a foreground job: Ctrl-C goes to the group.
        start_new_session=True,
    )


class Output:
    """The demo's output, read by a thread so the test can wait for a line with a deadline."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.text = ""
        self.ended = False
        assert proc.stdout is not None
        stream = proc.stdout

        def read() -> None:
            for line in stream:
                self.lines.put(line)
            self.lines.put(None)

        threading.Thread(target=read, daemon=True).start()

    def take(self, timeout: float) -> None:
        """Take the next line, if one comes within `timeout` seconds."""
        if self.ended:
            return
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            return
        if line is None:
            self.ended = True
        else:
            self.text += line

    def until(self, marker: str, timeout: float = TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while marker not in self.text:
            if self.ended:
                raise AssertionError(f"the demo ended before {marker!r}:\n{self.text}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {marker!r} in the demo's output:\n{self.text}")
            self.take(0.5)
        return self.text

    def rest(self, timeout: float = TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while not self.ended and time.monotonic() < deadline:
            self.take(0.5)
        return self.text


def descendants(proc: subprocess.Popen[str]) -> list[psutil.Process]:
    try:
        return psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def command_of(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""  # it ended in the meantime (a job's git, say)


def kill_all(proc: subprocess.Popen[str], known: list[psutil.Process]) -> None:
    """After a failure: the demo and everything it started, wherever their groups are."""
    for child in [*known, *descendants(proc)]:
        try:
            child.kill()
        except psutil.Error:
            pass
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def git(*args: str) -> str:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(
        ["git", *args], capture_output=True, text=True, env=env, check=True
    ).stdout


@pytest.mark.slow
def test_demo_runs_the_pipeline_then_exits_with_the_switch(tmp_path: Path) -> None:
    proc = start_demo(tmp_path, exit_at_once=True)
    output = Output(proc)
    seen: dict[int, psutil.Process] = {}
    commands: list[str] = []
    try:
        # Every program the demo starts, collected while it runs, must be gone at the end.
        while proc.poll() is None:
            for child in descendants(proc):
                if child.pid not in seen:
                    seen[child.pid] = child
                    commands.append(command_of(child))
            output.take(0.2)
        text = output.rest()
    finally:
        if proc.poll() is None:
            kill_all(proc, list(seen.values()))
    assert proc.wait(TIMEOUT) == 0, text
    assert PANEL.search(text) and CLOUD.search(text), text
    for step in ("$ bluegrass-cloud", "$ HOME=", "bluegrass sync", "$ bluegrass-appliance"):
        assert step in text, step
    assert "stopping now" in text
    assert any("gunicorn" in c for c in commands), commands  # the servers did run
    _, alive = psutil.wait_procs(list(seen.values()), timeout=10)
    assert not alive, alive

    # The drive holds the mirror with the sample's history, readable with git alone.
    demo = tmp_path / "demo"
    mirror = demo / "pi" / "drive" / "bluegrass" / "demo" / "documents.git"
    subjects = git("--git-dir", str(mirror), "log", "--format=%s", "main").splitlines()
    assert len(subjects) >= 2 and all("demo/documents" in s for s in subjects), subjects
    latest = git("--git-dir", str(mirror), "show", "main:files/letters/to-grandma.txt")
    assert "PS: send pie." in latest
    first = git("--git-dir", str(mirror), "rev-list", "--max-parents=0", "main").strip()
    assert "- okra" in git("--git-dir", str(mirror), "show", f"{first}:files/recipes/burgoo.md")
    # And the latest plain files beside it.
    files = demo / "pi" / "drive" / "bluegrass" / "demo" / "documents"
    assert (files / "letters" / "to-aunt-may.txt").read_text() == "Dear May,\nthe horses say hi.\n"
    assert not (files / "recipes" / "burgoo.md").exists()
    # The replica went up to the demo's S3 server, encrypted, and its check passed.
    assert "== 3b. The replica" in text, text
    assert "uploaded, manifest manifests/000001.json" in text, text
    objects = [p for p in (demo / "s3" / "bluegrass").rglob("*") if p.is_file()]
    assert objects and all(p.read_bytes().startswith(b"RCLONE\x00\x00") for p in objects)


@pytest.mark.slow
def test_demo_serves_the_panels_until_ctrl_c_stops_everything(tmp_path: Path) -> None:
    proc = start_demo(tmp_path, exit_at_once=False)
    output = Output(proc)
    running: list[psutil.Process] = []
    try:
        text = output.until("Press Ctrl-C")
        panel, pi_password = PANEL.search(text).groups()  # type: ignore[union-attr]
        cloud, cloud_password = CLOUD.search(text).groups()  # type: ignore[union-attr]

        login = Browser(panel).get("/login")
        assert login.status == 200 and 'name="password"' in login.text
        pi = Browser(panel)
        assert pi.login("admin", pi_password).status == 302
        board = pi.get("/")
        assert board.status == 200 and "demo/documents" in board.text, board.text
        site = Browser(cloud)
        assert site.login("demo", cloud_password).status == 302
        board = site.get("/").text
        assert "documents" in board
        assert 'id="replica-h"' in board and "up to date" in board, board

        running = descendants(proc)
        commands = [command_of(p) for p in running]
        assert sum("gunicorn" in c for c in commands) >= 2, commands  # the Pi's and the cloud's
        assert any("bluegrass-appliance" in c and " run" in c for c in commands), commands

        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in its terminal does
        assert proc.wait(120) == 0, output.rest()
    finally:
        if proc.poll() is None:
            kill_all(proc, running)
    text = output.rest()
    assert "Stopping everything" in text and "pi stopped (exit 0)" in text, text
    assert "cloud stopped (exit 0)" in text, text
    _, alive = psutil.wait_procs(running, timeout=10)
    assert not alive, [p.pid for p in alive]
