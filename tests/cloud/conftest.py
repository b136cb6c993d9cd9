from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import VENV_BIN

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
