"""Fixtures for the laptop client: a real sync endpoint on loopback and laptops with own homes.

`cloud` is the one thing to swap when the real cloud exists: anything with
  .root        the user's server-side folder (DATA/files/<user>/), read-only for tests
  .code        an enrollment code for it
  .enrollment  the decoded code
  .restart(key=None)  stop and start again on the same port, optionally with another host key
will do. Until then it is `rclone serve sftp --user alice --pass d1234abcd.<secret>` jailed
in a temporary folder, which is what the cloud's auth proxy gives one user.

Tests never write into `cloud.root` directly: the endpoint caches listings, and a file changed
behind its back would look unchanged (docs/design.md D2). The far side is edited through a
second laptop, or with rclone through the endpoint (`Laptop.rclone`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from bluegrass.core.enrollment import Enrollment

from tests.conftest import VENV_BIN, require_tool
from tests.support.net import free_port, wait_for_port

USER = "alice"
DEVICE = "d1234abcd"
SECRET = "s3cr3t-for-tests-0123456789"


def make_host_key(folder: Path, name: str) -> Path:
    key = folder / name
    subprocess.run(
        [require_tool("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)],
        check=True,
    )
    return key


def public_key(key: Path) -> str:
    kind, blob = Path(f"{key}.pub").read_text().split()[:2]
    return f"{kind} {blob}"


class SftpCloud:
    """`rclone serve sftp` for one user on 127.0.0.1, restartable on the same port."""

    def __init__(self, base: Path, key: Path) -> None:
        self.base = base
        self.root = base / "files" / USER
        self.root.mkdir(parents=True)
        self.key = key
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.enrollment = Enrollment(
            server="127.0.0.1",
            sftp_port=self.port,
            http_port=self.port + 1 if self.port < 65535 else 1,
            user=USER,
            device=DEVICE,
            secret=SECRET,
            host_key=public_key(key),
        )
        self.code = self.enrollment.encode()
        self.start()

    def start(self, key: Path | None = None) -> None:
        key = key or self.key
        log = (self.base / "serve.log").open("ab")
        self.proc = subprocess.Popen(
            [
                str(VENV_BIN / "rclone"),
                "serve",
                "sftp",
                "--addr",
                f"127.0.0.1:{self.port}",
                "--user",
                USER,
                "--pass",
                self.enrollment.password,
                "--key",
                str(key),
                str(self.root),
            ],
            stdout=log,
            stderr=log,
        )
        log.close()
        wait_for_port(self.port, self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, key: Path | None = None) -> None:
        self.stop()
        self.start(key)


@pytest.fixture(scope="session")
def host_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("hostkeys")
    return make_host_key(folder, "server-a"), make_host_key(folder, "server-b")


@pytest.fixture
def cloud(tmp_path: Path, host_keys: tuple[Path, Path]) -> Iterator[SftpCloud]:
    server = SftpCloud(tmp_path / "cloud", host_keys[0])
    try:
        yield server
    finally:
        server.stop()


class Laptop:
    """One computer: its own HOME, config and state folders; runs the real `bluegrass`."""

    def __init__(self, home: Path) -> None:
        self.home = home
        home.mkdir(parents=True)
        self.config_dir = home / ".config" / "bluegrass"
        self.state_dir = home / ".local" / "state" / "bluegrass"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "RCLONE_"))},
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_STATE_HOME": str(home / ".local" / "state"),
        }

    def command(self, *args: str) -> list[str]:
        return [str(VENV_BIN / "bluegrass"), *args]

    def run(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            self.command(*args),
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.home,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"bluegrass {' '.join(args)} exited {proc.returncode}\n"
                f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
            )
        return proc

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            cwd=self.home,
            start_new_session=True,
        )

    def status(self) -> dict:
        return json.loads(self.run("status", "--json").stdout)

    def segment_status(self, name: str) -> dict:
        found = [s for s in self.status()["segments"] if s["segment"] == name]
        assert found, f"no segment {name} in status"
        return found[0]

    def folder(self, name: str) -> Path:
        path = self.home / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def workdir(self, segment: str) -> Path:
        return self.state_dir / "segments" / segment / "bisync"

    def set_sync_option(self, key: str, value: str | int) -> None:
        """Edit [sync] in bluegrass.toml as a person would (the file is plain TOML)."""
        config = self.config_dir / "bluegrass.toml"
        lines = config.read_text().splitlines()
        rendered = f'"{value}"' if isinstance(value, str) else str(value)
        lines = [ln for ln in lines if not ln.startswith(f"{key} =")]
        at = lines.index("[sync]") + 1
        lines.insert(at, f"{key} = {rendered}")
        config.write_text("\n".join(lines) + "\n")

    def rclone(self, *args: str) -> subprocess.CompletedProcess[str]:
        """rclone with this laptop's remote, for reaching the cloud through the endpoint."""
        return subprocess.run(
            [str(VENV_BIN / "rclone"), "--config", str(self.config_dir / "rclone.conf"), *args],
            capture_output=True,
            text=True,
            check=True,
            env=self.env,
        )


@pytest.fixture
def new_laptop(tmp_path: Path) -> Callable[[str], Laptop]:
    def make(name: str) -> Laptop:
        return Laptop(tmp_path / name)

    return make


@pytest.fixture
def laptop(new_laptop: Callable[[str], Laptop]) -> Laptop:
    return new_laptop("laptop-a")


@pytest.fixture
def enrolled(laptop: Laptop, cloud: SftpCloud) -> Laptop:
    laptop.run("enroll", cloud.code)
    return laptop


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """The single error line of a failed command (and that it failed)."""
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("bluegrass: error: "), lines[0]
    return lines[0]


def wait_until(
    predicate: Callable[[], object], timeout: float = 30, what: str = "condition"
) -> object:
    """Poll `predicate` until it returns something true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)  # polling interval; the predicate decides
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def kill_tree(proc: subprocess.Popen[str], rclone_pid: int | None) -> None:
    """Power-cut style: SIGKILL to bluegrass's process group and to its rclone."""
    if rclone_pid:
        try:
            os.kill(rclone_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)
