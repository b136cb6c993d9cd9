"""A real `bluegrass-cloud run` on loopback, and a real rclone client to talk to its endpoint."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bluegrass.core import enrollment, rclone

from tests.conftest import VENV_BIN
from tests.support.net import free_port

READY = "sync endpoint ready"


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "it") -> None:
    """Poll `predicate` until it is true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@dataclass
class Server:
    data: Path
    tmp: Path
    sftp_port: int
    http_port: int
    # The devices' HTTPS port: every run serves one, so every harness gets a free port of its
    # own (never the default 8443, which parallel runs would fight over).
    device_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.tmp / "run.log"

    def start(self, *extra: str) -> None:
        self.log_path.write_bytes(b"")
        self.proc = subprocess.Popen(
            [
                str(VENV_BIN / "bluegrass-cloud"),
                "--data",
                str(self.data),
                "run",
                "--sftp-port",
                str(self.sftp_port),
                "--http-port",
                str(self.http_port),
                "--device-port",
                str(self.device_port),
                *extra,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.log_path.open("wb"),
        )
        self.wait_log(READY)

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_log(self, text: str, count: int = 1, timeout: float = 20.0) -> None:
        def seen() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"run exited early ({self.proc.returncode}):\n{self.log()}")
            return self.log().count(text) >= count

        wait_for(seen, timeout, f"{text!r} x{count} in the run log:\n{self.log()}")

    def endpoint_pid(self) -> int:
        found = re.findall(r"sync endpoint starting \(pid (\d+)\)", self.log())
        assert found, self.log()
        return int(found[-1])

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


@dataclass
class Client:
    """rclone's sftp backend pointed at the endpoint, host key pinned from an enrollment code."""

    port: int
    tmp: Path
    host_key: str

    def __post_init__(self) -> None:
        self.known_hosts = self.tmp / "known_hosts"
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {self.host_key}\n")

    def rclone(
        self,
        user: str,
        *args: str,
        password: str | None = None,
        key_file: Path | None = None,
        source: str = "127.0.0.1",
    ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RCLONE_")}
        env.update(
            RCLONE_SFTP_HOST="127.0.0.1",
            RCLONE_SFTP_PORT=str(self.port),
            RCLONE_SFTP_USER=user,
            RCLONE_SFTP_KNOWN_HOSTS_FILE=str(self.known_hosts),
            RCLONE_SFTP_SHELL_TYPE="unix",
            RCLONE_SFTP_MD5SUM_COMMAND="md5sum",
            RCLONE_SFTP_SHA1SUM_COMMAND="sha1sum",
        )
        if password is not None:
            env["RCLONE_SFTP_PASS"] = obscure(password)
        if key_file is not None:
            env["RCLONE_SFTP_KEY_FILE"] = str(key_file)
        return subprocess.run(
            [
                str(rclone.binary()),
                "--config",
                "",
                # One try per command: each is one login, so the counts in the auth log are ours.
                "--retries",
                "1",
                "--low-level-retries",
                "1",
                "--contimeout",
                "10s",
                # Every test speaks from its own loopback address, so that the per-address
                # rate limit of one test never refuses another's logins.
                "--bind",
                source,
                *args,
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )


def obscure(password: str) -> str:
    return subprocess.run(
        [str(rclone.binary()), "obscure", "-"],
        input=password,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@dataclass(frozen=True)
class Enrolled:
    user: str
    device: str
    password: str
    code: enrollment.Enrollment


def enrolled(output: str) -> Enrolled:
    """What `user add --json` or `device add --json` gave: the decoded enrollment code."""
    data = json.loads(output)
    code = enrollment.decode(data["enrollment_code"])
    assert code.user == data["user"] and code.device == data["device"]
    return Enrolled(code.user, code.device, code.password, code)


def cloud_cli(data: Path) -> Callable[..., str]:
    """`bluegrass-cloud --data DATA ARGS…`, run for a test's set-up: its stdout, or the test
    fails with the command's stderr."""

    def cli(*args: str) -> str:
        proc = subprocess.run(
            [str(VENV_BIN / "bluegrass-cloud"), "--data", str(data), *args],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    return cli
