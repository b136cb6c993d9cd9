"""What the recovery-kit tests share: reading a kit PDF the way its reader does, and a shell
with nothing of Bluegrass on PATH."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import VENV_BIN

STEP = re.compile(r"^([A-Z])(\d+)\. ")


def need(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        if os.environ.get("CI"):
            raise AssertionError(f"{tool} is missing (listed in .ci/run)")
        pytest.skip(f"{tool} is not installed")
    return found


def pdf_text(pdf: Path) -> str:
    return subprocess.run(
        [need("pdftotext"), "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout


def commands(text: str) -> dict[str, list[str]]:
    """{step: [command, ...]} as printed: a command starts at a line "$ ..." and goes on over
    the lines "> ..." after it, as the kit tells its reader. The lines before the first
    numbered step are the secrets, under "secrets"."""
    found: dict[str, list[str]] = {"secrets": []}
    current = "secrets"
    for raw in text.splitlines():
        line = raw.strip("\f").strip()
        step = STEP.match(line)
        if step:
            current = f"{step.group(1)}{step.group(2)}"
            found[current] = []
        elif line.startswith("$ "):
            found[current].append(line[2:])
        elif line.startswith(">") and found[current]:
            found[current][-1] += "\n" + line[2:]
    return found


def bare_shell(home: Path, tools: tuple[str, ...] = ("git", "rclone")) -> dict[str, str]:
    """An environment with only `tools` (and the few programs every system has: sh, tar,
    mkdir, cat) on PATH, a fresh HOME, no Bluegrass and no inherited git or rclone settings."""
    bin_dir = home / ".tools"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in (*tools, "sh", "tar", "mkdir", "cat"):
        path = VENV_BIN / "rclone" if name == "rclone" else need(name)
        (bin_dir / name).symlink_to(Path(path).resolve())
    return {"PATH": str(bin_dir), "HOME": str(home), "TZ": "UTC", "LC_ALL": "C"}


def run_sh(script: str, env: dict[str, str], cwd: Path) -> str:
    """`script` run by POSIX sh as a reader's terminal would, stopping at the first error."""
    proc = subprocess.run(
        [env["PATH"] + "/sh", "-e", "-u", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, f"{script}\n---\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def tree(root: Path) -> dict[str, object]:
    """{relative path: bytes, ("link", target) or ("x", bytes) for an executable file}."""
    found: dict[str, object] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            found[rel] = ("link", os.readlink(path))
        elif path.is_file():
            data = path.read_bytes()
            found[rel] = ("x", data) if path.stat().st_mode & 0o100 else data
    return found
