"""Fixtures for the appliance: its command line, a cloud to mirror, drives to plug in.

Everything runs for real: `bluegrass-appliance` as a process, git, rclone, a git http-backend
behind tests/appliance/fakecloud.py, and for drives, loop devices on image files, ext4,
mount, and systemd-udevd feeding pyudev.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from bluegrass.core import rclone
from bluegrass.core.enrollment import Enrollment
from bluegrass.core.store import Repository, snapshot

from tests.appliance.fakecloud import FakeCloud
from tests.conftest import VENV_BIN, require_tool
from tests.support import tls

USER = "alice"
PASSWORD_SECRET = "s3cret-s3cret-s3cret-1"
# Tests never serve the panel on the LAN, nor on a fixed port another test may hold.
PANEL_ON_LOOPBACK = ("--panel-bind", "127.0.0.1", "--panel-port", "0")


def isolated_git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_CONFIG_NOSYSTEM="1",
        GIT_TERMINAL_PROMPT="0",
        GIT_AUTHOR_NAME="Test",
        GIT_AUTHOR_EMAIL="test@example.invalid",
        GIT_COMMITTER_NAME="Test",
        GIT_COMMITTER_EMAIL="test@example.invalid",
        LC_ALL="C",
    )
    return env


def git(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["git", *args], capture_output=True, text=True, env=isolated_git_env(), check=False
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"git {args} failed: {proc.stderr}")
    return proc


def enrollment(port: int, sftp_port: int = 2022, host_key: str | None = None) -> Enrollment:
    """A code for a cloud whose device port is `port`, pinning the fake cloud's TLS key."""
    return Enrollment(
        server="127.0.0.1",
        sftp_port=sftp_port,
        http_port=port,
        device_port=port,
        tls_pin=tls.shared().pin,
        user=USER,
        device="d0a1b2c3d",
        secret=PASSWORD_SECRET,
        host_key=host_key
        or "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPlaceholderPlaceholderPlaceholder00",
    )


class Appliance:
    """The real `bluegrass-appliance` command line with a state folder of this test."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.global_args: list[str] = []

    def __call__(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [
                str(VENV_BIN / "bluegrass-appliance"),
                "--state",
                str(self.state),
                *self.global_args,
                *args,
            ],
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
            env=self.env(),
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"bluegrass-appliance {' '.join(args)} failed ({proc.returncode}): {proc.stderr}"
            )
        return proc

    def env(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if not k.startswith("BLUEGRASS_")}

    def json(self, *args: str) -> dict:
        """The --json result; a failed job still prints one (and exits 1)."""
        proc = self(*args, "--json", check=False)
        if not proc.stdout.strip():
            raise AssertionError(f"bluegrass-appliance {' '.join(args)}: {proc.stderr}")
        return json.loads(proc.stdout)

    def configure(self, text: str) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        (self.state / "bluegrass-appliance.toml").write_text(text)

    def enroll(self, code: Enrollment) -> None:
        self("enroll", code.encode())

    @contextlib.contextmanager
    def daemon(self, log: Path, *run_args: str) -> Iterator[subprocess.Popen[bytes]]:
        """`run`, with its panel on a free loopback port unless `run_args` say otherwise."""
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    str(VENV_BIN / "bluegrass-appliance"),
                    "--state",
                    str(self.state),
                    *self.global_args,
                    "run",
                    *(run_args or PANEL_ON_LOOPBACK),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env(),
            )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def wait_status(
        self, check: Callable[[dict], bool], what: str, timeout: float = 60, log: Path | None = None
    ) -> dict:
        """Poll `status --json` until `check` holds: the daemon's published state is the
        readiness signal, there is nothing else to wait on across processes."""
        deadline = time.monotonic() + timeout
        found: dict = {}
        while time.monotonic() < deadline:
            found = self.json("status")
            if check(found):
                return found
            time.sleep(0.2)
        extra = log.read_text(errors="replace")[-4000:] if log and log.exists() else ""
        raise AssertionError(f"timed out waiting for {what}; last status: {found}\n{extra}")


@pytest.fixture
def appliance(tmp_path: Path) -> Appliance:
    return Appliance(tmp_path / "state")


# -- segments on the cloud ------------------------------------------------------------------


class CloudData:
    """A cloud data root made with the real store: DATA/files/U/S and DATA/repos/U/S.git."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def files(self, segment: str, user: str = USER) -> Path:
        path = self.root / "files" / user / segment
        path.mkdir(parents=True, exist_ok=True)
        return path

    def repo_path(self, segment: str, user: str = USER) -> Path:
        return self.root / "repos" / user / f"{segment}.git"

    def commit(self, segment: str, user: str = USER) -> str:
        repo = Repository.init(self.repo_path(segment, user))
        snapshot(repo, self.files(segment, user))
        head = repo.head()
        assert head
        return head

    def head(self, segment: str, user: str = USER) -> str:
        return git(
            "--git-dir", str(self.repo_path(segment, user)), "rev-parse", "main"
        ).stdout.strip()


@pytest.fixture
def cloud_data(tmp_path: Path) -> CloudData:
    return CloudData(tmp_path / "cloud")


@pytest.fixture
def fake_cloud(cloud_data: CloudData) -> Iterator[FakeCloud]:
    (cloud_data.root / "repos").mkdir(parents=True, exist_ok=True)
    code = enrollment(0)
    with FakeCloud(cloud_data.root / "repos", {USER: code.password}) as server:
        yield server


def write_random(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        left = size
        while left:
            step = min(left, 1 << 20)
            out.write(os.urandom(step))
            left -= step


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fsck(repo: Path) -> None:
    proc = git("--git-dir", str(repo), "fsck", "--full", "--strict", "--no-progress", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- the sync endpoint: rclone serve sftp ---------------------------------------------------


@contextlib.contextmanager
def sftp_server(root: Path, user: str, password: str, keydir: Path) -> Iterator[tuple[int, str]]:
    """`rclone serve sftp --read-only` on 127.0.0.1 with a fresh host key: (port, public key)."""
    require_tool("ssh-keygen")
    key = keydir / "host_ed25519"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    public = " ".join(key.with_suffix(".pub").read_text().split()[:2])
    proc = subprocess.Popen(
        [
            str(rclone.binary()),
            "serve",
            "sftp",
            "--addr",
            "127.0.0.1:0",
            "--user",
            user,
            "--pass",
            password,
            "--key",
            str(key),
            "--read-only",
            str(root),
            "--config",
            os.devnull,
            # The test changes files behind the server's back; the real cloud's files arrive
            # through its own endpoint, whose listing cache then stays right.
            "--dir-cache-time",
            "0s",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    port = None
    seen = []
    # rclone says where it listens once it does: that line is the readiness signal.
    for line in proc.stdout:
        seen.append(line)
        found = re.search(r"listening on 127\.0\.0\.1:(\d+)", line, re.I) or re.search(
            r"127\.0\.0\.1:(\d+)", line
        )
        if found and "listen" in line.lower():
            port = int(found.group(1))
            break
    if port is None:
        proc.kill()
        raise AssertionError("rclone serve sftp did not start: " + "".join(seen))
    try:
        yield port, public
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# -- drives: loop devices, udevd ------------------------------------------------------------


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (loop devices, mount)")


@pytest.fixture(scope="session")
def udevd() -> Iterator[str]:
    """systemd-udevd running, so pyudev's monitor gets udev events: started here (and stopped
    after) when the machine does not run one."""
    require_root()
    udevadm = require_tool("udevadm")
    ping = subprocess.run([udevadm, "control", "--ping"], capture_output=True, check=False)
    if ping.returncode == 0:
        yield "already running"
        return
    daemon = next(
        (
            p
            for p in ("/lib/systemd/systemd-udevd", "/usr/lib/systemd/systemd-udevd")
            if Path(p).exists()
        ),
        shutil.which("systemd-udevd"),
    )
    if daemon is None:
        pytest.skip("system tool not installed: systemd-udevd (Debian package udev)")
    proc = subprocess.Popen([daemon], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # udevadm waits for the control socket's answer; it fails at once until udevd listens.
    deadline = time.monotonic() + 30
    while subprocess.run([udevadm, "control", "--ping"], capture_output=True).returncode != 0:
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise AssertionError("systemd-udevd did not start")
        time.sleep(0.1)
    try:
        yield "started by the tests"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


class Loop:
    """An ext4 (or blank) image on a loop device, attached and detached like a USB drive."""

    def __init__(self, image: Path) -> None:
        self.image = image
        self.device: str | None = None

    def attach(self) -> str:
        out = subprocess.run(
            ["losetup", "--find", "--show", str(self.image)],
            capture_output=True,
            text=True,
            check=True,
        )
        self.device = out.stdout.strip()
        return self.device

    def detach(self) -> None:
        if self.device:
            subprocess.run(["losetup", "-d", self.device], capture_output=True, check=False)
            self.device = None

    def attached(self) -> bool:
        out = subprocess.run(
            ["losetup", "-j", str(self.image)], capture_output=True, text=True, check=False
        )
        return bool(out.stdout.strip())


@pytest.fixture
def make_loop(tmp_path: Path) -> Iterator[Callable[[int], Loop]]:
    require_root()
    require_tool("losetup")
    require_tool("mkfs.ext4")
    require_tool("e2fsck")
    require_tool("blkid")
    require_tool("wipefs")
    made: list[Loop] = []

    def make(size_mb: int) -> Loop:
        image = tmp_path / f"drive-{secrets.token_hex(3)}.img"
        with image.open("wb") as out:
            out.truncate(size_mb * 2**20)
        loop = Loop(image)
        made.append(loop)
        return loop

    yield make
    for loop in made:
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            # Anything of this test's still mounted under tmp_path (a failed test) goes first.
            point = line.split()[4]
            if point.startswith(str(tmp_path)):
                subprocess.run(["umount", "-l", point], capture_output=True, check=False)
        out = subprocess.run(
            ["losetup", "-j", str(loop.image)], capture_output=True, text=True, check=False
        )
        for line in out.stdout.splitlines():
            subprocess.run(["losetup", "-d", line.split(":")[0]], capture_output=True, check=False)


def shutdown_fs(mountpoint: Path) -> None:
    """Make a mounted ext4 fail every I/O, as a pulled USB drive does (FS_IOC_SHUTDOWN with
    NOLOGFLUSH: nothing more reaches the disk, like power gone)."""
    import fcntl
    import struct

    fd = os.open(mountpoint, os.O_RDONLY)
    try:
        fcntl.ioctl(fd, 0x8004587D, struct.pack("I", 2))
    finally:
        os.close(fd)
