"""Create the project's virtual environment and install every role into it, editable.

Run by `make setup`. Works on a fresh Debian or Ubuntu machine that has python3 but not the
python3-venv package (Debian strips ensurepip): the venv is then created without pip and pip
is bootstrapped from PyPI's own wheel.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import urllib.request
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROLES = ["core", "laptop-client", "cloud", "appliance", "panel"]


def venv_python(env: Path) -> Path:
    if sys.platform == "win32":
        return env / "Scripts" / "python.exe"
    return env / "bin" / "python"


def has_pip(python: Path) -> bool:
    probe = subprocess.run([str(python), "-m", "pip", "--version"], capture_output=True)
    return probe.returncode == 0


def bootstrap_pip(python: Path) -> None:
    """Install pip from PyPI's wheel when ensurepip is missing (Debian without python3-venv)."""
    with urllib.request.urlopen("https://pypi.org/pypi/pip/json", timeout=60) as response:
        release = json.load(response)
    wheel = next(u for u in release["urls"] if u["filename"].endswith(".whl"))
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / wheel["filename"]
        with urllib.request.urlopen(wheel["url"], timeout=120) as response:
            target.write_bytes(response.read())
        # A pip wheel can run itself: python pip.whl/pip install pip.whl
        subprocess.run(
            [str(python), str(target / "pip"), "install", "--quiet", str(target)], check=True
        )


def main() -> int:
    env = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / ".venv"
    python = venv_python(env)
    if not python.exists():
        try:
            venv.EnvBuilder(with_pip=True).create(env)
        except (subprocess.CalledProcessError, OSError):
            venv.EnvBuilder(with_pip=False, clear=True).create(env)
    if not has_pip(python):
        bootstrap_pip(python)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip>=23.1"], check=True)
    editable: list[str] = []
    for role in ROLES:
        editable += ["-e", str(ROOT / role)]
    subprocess.run([*pip, *editable, "-r", str(ROOT / "requirements-dev.txt")], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
