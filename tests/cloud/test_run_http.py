"""Git over HTTP as `bluegrass-cloud run` serves it: real accounts, real gunicorn, real git."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from tests.cloud.conftest import Site

GIT_ENV = {
    **os.environ,
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
}


def clone(
    site: Site, user: str, password: str, repo_user: str, target: Path
) -> subprocess.CompletedProcess[str]:
    url = f"http://{user}:{password}@127.0.0.1:{site.server.http_port}/git/{repo_user}/docs.git"
    return subprocess.run(
        ["git", "clone", "--bare", url, str(target)], capture_output=True, text=True, env=GIT_ENV
    )


def segments(site: Site, user: str, password: str) -> tuple[int, dict[str, object] | None]:
    req = urllib.request.Request(f"http://127.0.0.1:{site.server.http_port}/api/v1/segments")
    req.add_header(
        "Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as err:
        return err.code, None


def test_device_clones_only_its_users_history_until_revoked(site: Site, tmp_path: Path) -> None:
    # `run` commits every segment at its first start: wait for that rather than race it with
    # a `commit` of our own (which then fails as busy, or trips over the new repository).
    for user in ("alice", "bob"):
        site.server.wait_log(f"commit {user}/docs: committed")
        site.server.wait_log(f"maintain {user}/docs: maintained")
    status, listing = segments(site, "alice", site.alice.password)
    assert status == 200 and listing is not None
    assert [s["name"] for s in listing["segments"]] == ["docs"]  # type: ignore[index]

    mine = clone(site, "alice", site.alice.password, "alice", tmp_path / "mine.git")
    assert mine.returncode == 0, mine.stderr
    show = subprocess.run(
        ["git", "--git-dir", str(tmp_path / "mine.git"), "show", "main:files/alice.txt"],
        capture_output=True,
        text=True,
        env=GIT_ENV,
        check=True,
    )
    assert show.stdout == "alice's notes\n"

    # alice's device cannot read bob's history, under her name or his
    assert clone(site, "alice", site.alice.password, "bob", tmp_path / "b1.git").returncode != 0
    assert clone(site, "bob", site.alice.password, "bob", tmp_path / "b2.git").returncode != 0
    assert segments(site, "bob", site.alice.password)[0] == 401

    site.cloud("device", "revoke", "alice", site.alice.device)
    assert (
        clone(site, "alice", site.alice.password, "alice", tmp_path / "again.git").returncode != 0
    )
    assert segments(site, "alice", site.alice.password)[0] == 401
    assert any(
        e["method"] == "password" and e["outcome"] == "refused" and e["via"] == "http"
        for e in site.auth_log()
    )
