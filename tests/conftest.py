"""Suite-wide rules. Role- and area-specific fixtures live in each folder's own conftest.py."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def require_tool(name: str) -> str:
    """The path of a system tool, or a skip that names it (a failure in CI, see below)."""
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"system tool not installed: {name}")
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # In CI a skipped test is a failure: a skip there means a missing install step.
    if os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped and session.exitstatus == 0:
        reporter.write_line(
            f"CI=true: {skipped} test(s) skipped; in CI that is a failure", red=True
        )
        session.exitstatus = 1
