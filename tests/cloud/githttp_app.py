"""The git-over-HTTP app for tests, behind a fixed credential.

The real server authenticates devices against the accounts database; this module only lets
tests/cloud/test_githttp.py exercise the HTTP and git side through a real gunicorn.
"""

from __future__ import annotations

import os
from pathlib import Path

from bluegrass.cloud.githttp import GitHTTP

USERS = {
    "alice": "d0000000a.alice-secret-0123456789abcdef",
    "bob": "d0000000b.bob-secret-0123456789abcdef",
}


def app() -> GitHTTP:
    return GitHTTP(
        Path(os.environ["BLUEGRASS_TEST_REPOS"]),
        lambda u, p, _c: USERS.get(u) == p,
        Path(os.environ["BLUEGRASS_TEST_FILES"]),
    )
