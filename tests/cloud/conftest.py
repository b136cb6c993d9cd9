from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cloud.server import Client, Enrolled, Server, enrolled
from tests.conftest import VENV_BIN
from tests.support.net import free_port

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def cloud(data: Path) -> Run:
    """Run the real `bluegrass-cloud` command line against a data root of this test."""

    def run(
        *args: str, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(VENV_BIN / "bluegrass-cloud"), "--data", str(data), *args],
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"bluegrass-cloud {' '.join(args)} failed: {proc.stderr}")
        return proc

    return run


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """The single error line of a failed command (and that it failed)."""
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("bluegrass-cloud: error: "), lines[0]
    return lines[0]


def tree_state(root: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every entry under root with its mode, mtime and content: to prove nothing changed."""
    state: dict[str, tuple[int, int, bytes]] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        content = path.read_bytes() if path.is_file() and not path.is_symlink() else b""
        state[str(path.relative_to(root))] = (st.st_mode, st.st_mtime_ns, content)
    return state


@dataclass
class Site:
    """A data root with alice and bob enrolled, `run` serving it, and an rclone client."""

    data: Path
    cloud: Run
    server: Server
    client: Client
    alice: Enrolled
    bob: Enrolled

    def auth_log(self) -> list[dict[str, object]]:
        """The auth log's records: every line must be one JSON object (decision 122)."""
        path = self.data / "logs" / "auth.log"
        lines = path.read_text().splitlines() if path.exists() else []
        return [json.loads(line) for line in lines]


@pytest.fixture
def site(cloud: Run, data: Path, tmp_path: Path) -> Iterator[Site]:
    cloud("init")
    alice = enrolled(cloud("user", "add", "alice", "--json").stdout)
    bob = enrolled(cloud("user", "add", "bob", "--json").stdout)
    for user, text in (("alice", "alice's notes\n"), ("bob", "bob's secret\n")):
        (data / "files" / user / "docs").mkdir()
        (data / "files" / user / "docs" / f"{user}.txt").write_text(text)
    server = Server(data, tmp_path, free_port(), free_port())
    server.start()
    try:
        yield Site(
            data, cloud, server, Client(server.sftp_port, tmp_path, alice.code.host_key), alice, bob
        )
    finally:
        server.stop()
