"""The sync endpoint: `rclone serve sftp` with our auth proxy, as a supervised child process."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bluegrass.cloud import hostkey
from bluegrass.core import rclone
from bluegrass.core.errors import BluegrassError

PROXY_NAME = "bluegrass-cloud-authproxy"
# A directory cache of 100 ms, not rclone's 5 minutes: rclone keeps a separate VFS, with its
# own listing cache, for each device's login, so a write through one laptop's login stays
# invisible to another laptop for that long, and a bisync run in that window overwrites the
# other's edit with no conflict copy (tests/e2e found it with 5 s). No cache at all (0s) is
# pathological in rclone 1.75.2: the server spins at 100% CPU and `rclone sync` of 1,000 files
# did not finish in 120 s, against 1.7 s with 100 ms (measured in this session).
DIR_CACHE_TIME = "100ms"
READY = re.compile(r"SFTP server listening on")
STOP_TIMEOUT = 10.0

Log = Callable[[str], None]


def authproxy_program() -> Path:
    """Our proxy's console script, beside this Python like rclone itself."""
    for folder in (Path(sysconfig.get_path("scripts")), Path(sys.executable).parent):
        candidate = folder / PROXY_NAME
        if candidate.is_file():
            break
    else:
        raise BluegrassError(f"{PROXY_NAME} not found beside {sys.executable}; reinstall Bluegrass")
    # rclone splits --auth-proxy on white space to allow arguments; a path with a space in it
    # cannot be given at all.
    if any(ch.isspace() for ch in str(candidate)):
        raise BluegrassError(
            f"{candidate}: rclone cannot run an auth proxy whose path holds white space; "
            "install Bluegrass under a path without spaces"
        )
    return candidate


def listen_address(bind: str, port: int) -> str:
    return f"[{bind}]:{port}" if ":" in bind else f"{bind}:{port}"


def command(data_root: Path, bind: str, port: int) -> list[str]:
    return [
        str(rclone.binary()),
        "serve",
        "sftp",
        "--addr",
        listen_address(bind, port),
        "--key",
        str(hostkey.ensure(data_root)),
        "--auth-proxy",
        str(authproxy_program()),
        "--dir-cache-time",
        DIR_CACHE_TIME,
        # Polling is for remotes that report changes; it must also stay below the cache time.
        "--poll-interval",
        "0",
        # No rclone.conf: the proxy's answer is the whole backend configuration.
        "--config",
        "",
        "--cache-dir",
        str(data_root / "run" / "rclone-cache"),
        "--log-format",
        "",
    ]


def environment(data_root: Path) -> dict[str, str]:
    # RCLONE_* variables would change the server's behaviour behind our back (RCLONE_LINKS
    # turns on symlink translation in the local backend, for one); the proxy finds the data
    # root through BLUEGRASS_DATA because rclone splits --auth-proxy on spaces.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RCLONE_")}
    env["BLUEGRASS_DATA"] = str(data_root)
    return env


class Endpoint:
    """One run of the rclone child: start, wait until it listens, stop."""

    def __init__(self, data_root: Path, bind: str, port: int, log: Log) -> None:
        self.data_root = data_root
        self.bind = bind
        self.port = port
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready = threading.Event()
        self.last_line = ""
        self.started = 0.0
        self._reader: threading.Thread | None = None

    name = "sftp"
    ready_pattern = READY

    def argv(self) -> list[str]:
        return command(self.data_root, self.bind, self.port)

    def env(self) -> dict[str, str]:
        return environment(self.data_root)

    def start(self) -> None:
        argv = self.argv()
        (self.data_root / "run").mkdir(exist_ok=True)
        # If we die without a chance to stop it (SIGKILL), the kernel stops it for us instead
        # of leaving it holding the port.
        setpriv = shutil.which("setpriv")
        if setpriv and sys.platform.startswith("linux"):
            argv = [setpriv, "--pdeathsig", "TERM", "--", *argv]
        self.ready.clear()
        self.last_line = ""
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=self.env(),
            cwd=self.data_root,
            # Its own process group: a Ctrl-C in the terminal reaches us, and we stop it.
            process_group=0,
        )
        self.started = time.monotonic()
        self._reader = threading.Thread(target=self._forward, args=(self.proc,), daemon=True)
        self._reader.start()

    def _forward(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if not line:
                continue
            self.last_line = line
            self.log(f"{self.name}: {line}")
            if self.ready_pattern.search(line):
                self.ready.set()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def poll(self) -> int | None:
        return self.proc.poll() if self.proc else None

    def wait_ready(self, timeout: float, stop: threading.Event) -> bool:
        """True once rclone says it listens; False if it exited, or on timeout or stop."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not stop.is_set():
            if self.ready.wait(0.1):
                return True
            if self.poll() is not None:
                if self._reader:
                    self._reader.join(1)  # let its last words reach the log
                return False
        return self.ready.is_set()

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
        finally:
            if self._reader:
                self._reader.join(1)


class WebServer(Endpoint):
    """gunicorn serving bluegrass.cloud.webapp (health, segment list, git over HTTP)."""

    name = "http"
    ready_pattern = re.compile(r"Listening at: ")

    def argv(self) -> list[str]:
        gunicorn = Path(sysconfig.get_path("scripts")) / "gunicorn"
        if not gunicorn.is_file():
            gunicorn = Path(sys.executable).parent / "gunicorn"
        return [
            str(gunicorn),
            "--bind",
            listen_address(self.bind, self.port),
            # Threads, not sync workers: a multi-GB fetch must not hit a worker timeout.
            "--worker-class",
            "gthread",
            "--workers",
            "2",
            "--threads",
            "8",
            "--graceful-timeout",
            "20",
            "--error-logfile",
            "-",
            # gunicorn's control socket defaults to one path per user (~/.gunicorn/): two
            # servers of the same user would fight over it, and nothing here uses it.
            "--no-control-socket",
            "bluegrass.cloud.webapp:from_environment()",
        ]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RCLONE_", "GUNICORN_"))}
        env["BLUEGRASS_DATA"] = str(self.data_root)
        return env
