"""Git over HTTP through a real gunicorn: clone, fetch, and everything a reader must not do."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from bluegrass.core import treestate
from bluegrass.core.store import Repository, snapshot

from tests.cloud.githttp_app import USERS
from tests.conftest import ROOT, VENV_BIN
from tests.support.net import free_port, wait_for_port

GIT_ENV = {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    base = tmp_path_factory.mktemp("githttp")
    repos = base / "repos"
    for user, files in (("alice", {"a.txt": b"alice's\n"}), ("bob", {"secret.txt": b"bob's\n"})):
        tree = base / "files" / user / "docs"
        tree.mkdir(parents=True)
        for name, data in files.items():
            (tree / name).write_bytes(data)
        snapshot(Repository.init(repos / user / "docs.git"), tree)
    port = free_port()
    proc = subprocess.Popen(
        [
            str(VENV_BIN / "gunicorn"),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "tests.cloud.githttp_app:app()",
        ],
        cwd=ROOT,
        env={
            **os.environ,
            "BLUEGRASS_TEST_REPOS": str(repos),
            "BLUEGRASS_TEST_FILES": str(base / "files"),
            "PYTHONPATH": str(ROOT),
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}", base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def url(base: str, user: str, password: str, path: str) -> str:
    return base.replace("http://", f"http://{user}:{password}@") + path


def git(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args], capture_output=True, text=True, env={**os.environ, **GIT_ENV}, check=check
    )


def get(base: str, path: str, auth: tuple[str, str] | None) -> tuple[int, bytes]:
    req = urllib.request.Request(base + path)
    if auth:
        req.add_header(
            "Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        )
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_clone_and_fetch_own_repository(server: tuple[str, Path], tmp_path: Path) -> None:
    base, data = server
    clone = tmp_path / "mirror.git"
    src = url(base, "alice", USERS["alice"], "/git/alice/docs.git")
    proc = git("-c", "protocol.version=2", "clone", "--bare", src, str(clone))
    assert proc.returncode == 0
    assert git("--git-dir", str(clone), "show", "main:files/a.txt").stdout == "alice's\n"
    # a new snapshot on the server arrives with a plain fetch
    (data / "files" / "alice" / "docs" / "b.txt").write_text("new\n")
    new = snapshot(
        Repository.open(data / "repos" / "alice" / "docs.git"), data / "files" / "alice" / "docs"
    )
    git("--git-dir", str(clone), "fetch", src, "refs/heads/main:refs/heads/main")
    assert git("--git-dir", str(clone), "rev-parse", "main").stdout.strip() == new.commit


def test_protocol_v2_is_spoken(server: tuple[str, Path]) -> None:
    base, _ = server
    req = urllib.request.Request(base + "/git/alice/docs.git/info/refs?service=git-upload-pack")
    req.add_header(
        "Authorization", "Basic " + base64.b64encode(f"alice:{USERS['alice']}".encode()).decode()
    )
    req.add_header("Git-Protocol", "version=2")
    with urllib.request.urlopen(req, timeout=20) as resp:
        assert b"version 2" in resp.read()


@pytest.mark.parametrize(
    ("user", "password", "path", "expected"),
    [
        ("alice", "wrong", "/git/alice/docs.git", 401),
        ("alice", USERS["bob"], "/git/alice/docs.git", 401),
        ("bob", USERS["alice"], "/git/bob/docs.git", 401),
        ("alice", USERS["alice"], "/git/bob/docs.git", 404),
        ("alice", USERS["alice"], "/git/alice/../bob/docs.git", 403),
        ("alice", USERS["alice"], "/git/alice/nope.git", 404),
    ],
)
def test_clone_refused(
    server: tuple[str, Path], tmp_path: Path, user: str, password: str, path: str, expected: int
) -> None:
    base, _ = server
    proc = git(
        "clone", "--bare", url(base, user, password, path), str(tmp_path / "x.git"), check=False
    )
    assert proc.returncode != 0
    assert not (tmp_path / "x.git").exists() or not list(
        (tmp_path / "x.git" / "objects").rglob("*.pack")
    )
    status, _ = get(base, path + "/info/refs?service=git-upload-pack", (user, password))
    assert status == expected


@pytest.mark.parametrize(
    "path",
    [
        "/git/alice/docs.git/info/refs?service=git-receive-pack",
        "/git/alice/docs.git/git-receive-pack",
        "/git/alice/docs.git/HEAD",
        "/git/alice/docs.git/config",
        "/git/alice/docs.git/objects/info/packs",
        "/git/alice/docs.git/info/refs",
    ],
)
def test_nothing_but_upload_pack(server: tuple[str, Path], path: str) -> None:
    base, _ = server
    status, _ = get(base, path, ("alice", USERS["alice"]))
    assert status == 403


def test_push_is_refused(server: tuple[str, Path], tmp_path: Path) -> None:
    base, data = server
    work = tmp_path / "work"
    git("clone", url(base, "alice", USERS["alice"], "/git/alice/docs.git"), str(work))
    (work / "evil.txt").write_text("x")
    git("-C", str(work), "add", "evil.txt")
    git("-C", str(work), "-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qm", "x")
    proc = git("-C", str(work), "push", "origin", "HEAD:main", check=False)
    assert proc.returncode != 0
    repo = Repository.open(data / "repos" / "alice" / "docs.git")
    assert "evil" not in repo.git.out(["ls-tree", "-r", "--name-only", "main"])


def test_segment_listing(server: tuple[str, Path]) -> None:
    base, data = server
    status, body = get(base, "/api/v1/segments", ("alice", USERS["alice"]))
    assert status == 200
    listing = json.loads(body)
    head = Repository.open(data / "repos" / "alice" / "docs.git").head()
    assert listing == {
        "user": "alice",
        "segments": [{"name": "docs", "git": "/git/alice/docs.git", "head": head}],
    }
    assert get(base, "/api/v1/segments", None)[0] == 401
    assert get(base, "/api/v1/segments", ("bob", USERS["alice"]))[0] == 401


def test_python_is_the_venv() -> None:
    assert Path(sys.executable).parent == VENV_BIN


# -- a live folder's state (what a laptop asks before skipping a sync) ----------------------


def state_of(base: str, segment: str, auth: tuple[str, str] | None) -> tuple[int, dict]:
    status, body = get(base, f"/api/v1/segments/{segment}/state", auth)
    return status, json.loads(body) if status == 200 else {}


def test_a_device_gets_its_own_live_folders_state_and_it_moves_with_a_change(server):
    base, root = server
    alice_docs = root / "files" / "alice" / "docs"
    status, body = state_of(base, "docs", ("alice", USERS["alice"]))
    assert status == 200 and body["segment"] == "docs"
    assert body["state"]["digest"] == treestate.walk(alice_docs).digest
    assert body["state"]["entries"] == len(list(alice_docs.rglob("*")))
    _, bobs = state_of(base, "docs", ("bob", USERS["bob"]))
    assert bobs["state"]["digest"] == treestate.walk(root / "files" / "bob" / "docs").digest
    assert bobs["state"]["digest"] != body["state"]["digest"]

    extra = alice_docs / "new.txt"
    extra.write_text("new\n")
    try:
        _, after = state_of(base, "docs", ("alice", USERS["alice"]))
        assert after["state"]["digest"] != body["state"]["digest"]
        assert after["state"]["entries"] == body["state"]["entries"] + 1
        assert after["state"]["racy"]
    finally:
        extra.unlink()


@pytest.mark.parametrize(
    "auth",
    [None, ("alice", "wrong"), ("alice", USERS["bob"]), ("bob", USERS["alice"]), ("Alice", "x")],
    ids=["none", "wrong-password", "bobs-password", "alices-password-as-bob", "bad-name"],
)
def test_a_state_without_the_right_credentials_is_refused(server, auth):
    base, _ = server
    status, body = get(base, "/api/v1/segments/docs/state", auth)
    assert status == 401, body
    assert b"digest" not in body


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/segments/../bob/docs/state",
        "/api/v1/segments/%2e%2e/bob/docs/state",
        "/api/v1/segments/docs/../../bob/docs/state",
        "/api/v1/segments/%2Fetc/state",
        "/api/v1/segments/bob%2Fdocs/state",
        "/api/v1/segments/absent/state",
        "/api/v1/segments/Docs/state",
    ],
)
def test_no_path_reaches_another_users_or_any_other_folder(server, path):
    base, _ = server
    status, body = get(base, path, ("alice", USERS["alice"]))
    assert status == 404, (path, body)
    assert b"digest" not in body


def test_one_users_folder_walks_run_one_at_a_time(tmp_path, monkeypatch):
    """In-process (the WSGI app called directly): four requests of one user at once walk one
    after the other; another user's walk is not held up by them."""
    from bluegrass.cloud import githttp
    from bluegrass.cloud.githttp import GitHTTP

    for user in ("alice", "bob"):
        (tmp_path / "files" / user / "docs").mkdir(parents=True)
    app = GitHTTP(tmp_path / "repos", lambda u, p, _c: USERS.get(u) == p, tmp_path / "files")
    guard = threading.Lock()
    active: dict[str, int] = {"alice": 0, "bob": 0}
    peak: dict[str, int] = {"alice": 0, "bob": 0, "both": 0}
    real_walk = treestate.walk

    def walk(folder: Path, **options: object) -> treestate.TreeState:
        user = folder.parent.name
        with guard:
            active[user] += 1
            peak[user] = max(peak[user], active[user])
            peak["both"] = max(peak["both"], active["alice"] + active["bob"])
        time.sleep(0.05)  # the walk's own work, long enough for the others to be waiting
        with guard:
            active[user] -= 1
        return real_walk(folder, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(githttp.treestate, "walk", walk)

    def ask(user: str) -> None:
        token = base64.b64encode(f"{user}:{USERS[user]}".encode()).decode()
        environ = {
            "PATH_INFO": "/api/v1/segments/docs/state",
            "REQUEST_METHOD": "GET",
            "HTTP_AUTHORIZATION": f"Basic {token}",
        }
        statuses = []
        body = b"".join(app(environ, lambda status, _headers: statuses.append(status)))
        assert statuses == ["200 OK"], body

    threads = [threading.Thread(target=ask, args=("alice",)) for _ in range(4)]
    threads.append(threading.Thread(target=ask, args=("bob",)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # alice's four walk in turn (200 ms): bob's, asked meanwhile, runs beside one of them
    assert peak == {"alice": 1, "bob": 1, "both": 2}
