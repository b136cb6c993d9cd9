"""Helpers for the image tests: the modules under image/ are scripts, loaded from there."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import ROOT

IMAGE = ROOT / "image"
STAGE = IMAGE / "stage-bluegrass"
FIRSTBOOT = STAGE / "01-bluegrass" / "files" / "bluegrass_firstboot.py"


def image_module(name: str) -> ModuleType:
    """Import image/NAME.py (image/ is a folder of scripts, not a package)."""
    if str(IMAGE) not in sys.path:
        sys.path.insert(0, str(IMAGE))
    return importlib.import_module(name)


def firstboot_module() -> ModuleType:
    folder = str(FIRSTBOOT.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module("bluegrass_firstboot")


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (chroot, mounts, loop devices)")


def files(*parts: str) -> Path:
    return STAGE.joinpath(*parts)
