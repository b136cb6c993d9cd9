"""The panel served by a real gunicorn on loopback, over the reference backend."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import VENV_BIN
from tests.support.net import free_port, wait_for_port


@contextmanager
def gunicorn(data: Path, mode: str = "cloud", workers: int = 2) -> Iterator[str]:
    """Serve the panel from `data`; yields its base URL; stops the server afterwards."""
    port = free_port()
    log = (data.parent / f"gunicorn-{port}.log").open("wb")
    env = {
        **os.environ,
        "BLUEGRASS_PANEL_DATA": str(data),
        "BLUEGRASS_PANEL_MODE": mode,
    }
    # gthread: a long download occupies a thread, not the worker's heartbeat, so the
    # arbiter does not kill a worker streaming a multi-GB archive (docs/panel.md).
    proc = subprocess.Popen(
        [
            str(VENV_BIN / "gunicorn"),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--worker-class",
            "gthread",
            "--threads",
            "4",
            "bluegrass.panel.app:create_app_from_env()",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        env=env,
    )
    try:
        wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
