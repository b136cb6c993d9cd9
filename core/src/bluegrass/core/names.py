"""Names of users and segments: short, lowercase, safe as a folder name and in a URL."""

from __future__ import annotations

import re

from bluegrass.core.errors import UsageError

NAME_PATTERN = r"[a-z0-9][a-z0-9-]{0,62}"
_NAME = re.compile(NAME_PATTERN)


def is_valid(name: str) -> bool:
    return _NAME.fullmatch(name) is not None


def check(kind: str, name: str) -> str:
    """`name` if it is a valid user or segment name, else a UsageError that says why."""
    if not is_valid(name):
        raise UsageError(
            f"invalid {kind} name {name!r}: expected 1-63 characters of a-z, 0-9 and '-', "
            "starting with a letter or digit"
        )
    return name
