"""A replica site for tests: `rclone serve s3` on loopback and a cloud data root with one user
and one empty segment, its `[replica]` pointing at that server; and the real
`bluegrass-cloud` command line run against a data root.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tests.conftest import VENV_BIN
from tests.support.net import free_port
from tests.support.s3 import S3Server

USER, SEGMENT = "alice", "documents"

Run = Callable[..., subprocess.CompletedProcess[str]]


def runner(data: Path) -> Run:
    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(VENV_BIN / "bluegrass-cloud"), "--data", str(data), *args],
            capture_output=True,
            text=True,
            env={k: v for k, v in os.environ.items() if k != "BLUEGRASS_DATA"},
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"bluegrass-cloud {' '.join(args)} failed: {proc.stderr}")
        return proc

    return run


def as_json(proc: subprocess.CompletedProcess[str]) -> dict:
    return json.loads(proc.stdout)


@dataclass
class ReplicaSite:
    base: Path  # the test's own folder
    s3: S3Server
    data: Path  # the data root
    live: Path  # USER's segment SEGMENT, empty at first

    def cloud(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return runner(self.data)(*args, check=check)


S = TypeVar("S", bound=ReplicaSite)


@contextmanager
def replica_site(base: Path, kind: type[S]) -> Iterator[S]:
    """A `kind` (ReplicaSite or a subclass whose other fields have defaults) over a running
    S3 server, stopped afterwards."""
    s3 = S3Server(base / "s3", free_port())
    s3.start()
    try:
        data = base / "data"
        cloud = runner(data)
        cloud("init")
        cloud("user", "add", USER)
        live = data / "files" / USER / SEGMENT
        live.mkdir()
        (data / "bluegrass-cloud.toml").write_text(s3.config_text())
        yield kind(base, s3, data, live)
    finally:
        s3.stop()
