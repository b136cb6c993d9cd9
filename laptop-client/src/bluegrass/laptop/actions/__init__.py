"""One module per `bluegrass` subcommand; each exposes `add_parser(subparsers)`."""

from __future__ import annotations

from bluegrass.core.errors import UsageError
from bluegrass.laptop import paths, settings


def load(*, enrolled: bool = False) -> settings.Settings:
    """The configuration, checked; with `enrolled`, refuse to go on before `bluegrass enroll`."""
    found = settings.load(paths.places())
    if enrolled and (not found.enrolled or not found.places.rclone_config.is_file()):
        raise UsageError("this computer is not enrolled yet: run `bluegrass enroll CODE`")
    return found
