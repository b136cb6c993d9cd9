"""Static checks of the pi-gen stage and the image scripts (fast; no root)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.conftest import ROOT, require_tool
from tests.image.conftest import STAGE

SCRIPTS = sorted(
    [
        *(ROOT / "image").rglob("*.sh"),
        ROOT / "image/debian/files/bluegrass-growroot",
        *(ROOT / "deploy").rglob("*.sh"),
    ]
)


def git_mode(path: Path) -> str:
    done = subprocess.run(
        ["git", "ls-files", "-s", str(path.relative_to(ROOT))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.split()[0] if done.stdout else ""


def test_shellcheck_clean() -> None:
    shellcheck = require_tool("shellcheck")
    done = subprocess.run(
        [shellcheck, "--severity=style", *map(str, SCRIPTS)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_scripts_are_strict() -> None:
    for script in SCRIPTS:
        text = script.read_text()
        assert "set -euo pipefail" in text, f"{script}: no set -euo pipefail"


def test_pigen_layout() -> None:
    prerun = STAGE / "prerun.sh"
    assert prerun.stat().st_mode & 0o111 and "copy_previous" in prerun.read_text()
    assert 'IMG_SUFFIX="-bluegrass"' in (STAGE / "EXPORT_IMAGE").read_text()
    runs = sorted(STAGE.glob("*/[0-9][0-9]-run.sh"))
    assert runs, "no NN-run.sh"
    for script in [prerun, *runs]:
        # pi-gen skips a NN-run.sh that is not executable, silently but for a log line.
        assert script.stat().st_mode & 0o111, f"{script} is not executable"
        mode = git_mode(script)
        assert mode in ("", "100755"), f"{script} is committed as {mode}, not executable"
    for sub in STAGE.iterdir():
        if sub.is_dir():
            assert re.fullmatch(r"\d\d-[a-z-]+", sub.name), sub.name
            for item in sub.iterdir():
                assert item.name == "files" or re.fullmatch(
                    r"\d\d-(run\.sh|run-chroot\.sh|packages|packages-nr|debconf)", item.name
                ), f"pi-gen would ignore {item}"


def test_host_side_scripts_leave_the_build_host_alone() -> None:
    """apt-get or systemctl in a NN-run.sh runs on the build host unless inside on_chroot."""
    for script in STAGE.glob("*/[0-9][0-9]-run.sh"):
        for number, line in enumerate(script.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            for word in ("apt-get", "systemctl", "useradd", "usermod", "pip "):
                assert word not in code, f"{script}:{number} runs {word} on the build host"


def test_every_file_the_stage_installs_exists() -> None:
    run = (STAGE / "01-bluegrass/00-run.sh").read_text()
    named = set(re.findall(r"files/([\w.-]+)", run)) - {"wheels"}
    assert named
    for name in named:
        assert (STAGE / "01-bluegrass/files" / name).is_file(), name
    shipped = {p.name for p in (STAGE / "01-bluegrass/files").iterdir()} - {"wheels"}
    assert shipped <= named, f"files never installed: {shipped - named}"


def test_pigen_pinned_to_one_release_tag() -> None:
    makefile = (ROOT / "Makefile").read_text()
    build = (ROOT / "image/pigen/build.sh").read_text()
    tag = re.search(r"^PIGEN_REF\s*\?=\s*(\S+)", makefile, re.M)
    assert tag is not None
    assert re.fullmatch(r"\d{4}-\d\d-\d\d-raspios-[a-z]+-arm64", tag.group(1))
    assert f'pigen_ref="${{PIGEN_REF:-{tag.group(1)}}}"' in build
    assert 'STAGE_LIST="stage0 stage1 stage2 $stage_name"' in build
    assert "ENABLE_SSH=0" in build and "DISABLE_FIRST_BOOT_USER_RENAME=1" in build
