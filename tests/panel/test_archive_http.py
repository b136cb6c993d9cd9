"""Streamed downloads over real HTTP (gunicorn, gthread): what the client sees when it goes
away or when the repository fails halfway, and that memory stays bounded on large files."""

from __future__ import annotations

import http.client
import io
import os
import re
import tarfile
import time
import tracemalloc
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from http.cookiejar import CookieJar
from pathlib import Path
from urllib.parse import urlencode, urlsplit
from urllib.request import HTTPCookieProcessor, build_opener

import pytest
from bluegrass.core.store import Repository, browse, snapshot
from bluegrass.core.store.objects import blob_id
from bluegrass.panel import archive

from tests.panel.conftest import PASSWORD
from tests.panel.server import gunicorn

MiB = 1 << 20
BIG = 64 * MiB  # more than the socket buffers, the pipe and the sink hold together
FIRST = 3 * MiB  # in the broken segment: sent before the missing object is reached
GONE = b"this blob is deleted from the repository\n"


@dataclass
class Served:
    base: str
    root: Path
    cookie: str  # the signed-in session, as a Cookie header


def repo_of(root: Path, segment: str) -> Path:
    return root / "repos" / "alice" / f"{segment}.git"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("archive-http") / "data"
    media = root / "files" / "alice" / "media"
    media.mkdir(parents=True)
    (media / "clip.bin").write_bytes(os.urandom(BIG))
    snapshot(Repository.init(repo_of(root, "media")), media)

    broken = root / "files" / "alice" / "broken"
    broken.mkdir(parents=True)
    (broken / "a-first.bin").write_bytes(os.urandom(FIRST))
    (broken / "b-gone.txt").write_bytes(GONE)
    snapshot(Repository.init(repo_of(root, "broken")), broken)
    oid = blob_id(GONE)
    (repo_of(root, "broken") / "objects" / oid[:2] / oid[2:]).unlink()

    with gunicorn(root) as base:
        cookies = CookieJar()
        browser = build_opener(HTTPCookieProcessor(cookies))
        first = browser.open(base + "/")
        found = re.search(r'name="csrf_token" value="([^"]+)"', first.read().decode())
        assert first.url.endswith("/setup") and found
        form = {"name": "alice", "password": PASSWORD, "confirm": PASSWORD}
        done = browser.open(
            base + "/setup", data=urlencode(form | {"csrf_token": found[1]}).encode()
        )
        assert done.url == base + "/"
        yield Served(base, root, "; ".join(f"{c.name}={c.value}" for c in cookies))


def request(
    served: Served, path: str
) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    parts = urlsplit(served.base)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
    conn.request("GET", path, headers={"Cookie": served.cookie})
    return conn, conn.getresponse()


def cat_files(repo: Path) -> list[int]:
    """Pids of the `git cat-file` processes working in `repo` (the server's, for an archive)."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(f"/proc/{name}/cwd")
        except OSError:
            continue  # gone meanwhile, or not ours to look at
        if cmdline[:2] == [b"git", b"cat-file"] and Path(cwd) == repo:
            pids.append(int(name))
    return pids


def until_no_cat_file(repo: Path, timeout: float = 30) -> list[int]:
    """Wait (polling what /proc says) until no cat-file works in `repo`; what is left."""
    deadline = time.monotonic() + timeout
    while (left := cat_files(repo)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


@pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="needs Linux's /proc")
@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
def test_a_client_going_away_stops_the_download_and_git(served: Served, fmt: str) -> None:
    repo = repo_of(served.root, "media")
    conn, resp = request(served, f"/s/alice/media/archive/?format={fmt}")
    try:
        assert resp.status == 200
        head = resp.read(MiB)
        assert len(head) == MiB
        # Halfway: the server is blocked on the client, its git process waiting on it.
        assert len(cat_files(repo)) == 1
    finally:
        conn.sock.close()  # type: ignore[union-attr]  # the browser tab is closed
        conn.close()
    assert until_no_cat_file(repo) == []


@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
def test_a_failure_halfway_breaks_the_download(served: Served, fmt: str) -> None:
    conn, resp = request(served, f"/s/alice/broken/archive/?format={fmt}")
    try:
        assert resp.status == 200  # the first file went out before the missing object
        with pytest.raises(http.client.IncompleteRead) as broken:
            resp.read()
    finally:
        conn.close()
    partial = broken.value.partial
    if fmt == "zip":
        assert len(partial) > FIRST // 2  # the download had begun: not an error page
        with pytest.raises(zipfile.BadZipFile):
            zipfile.ZipFile(io.BytesIO(partial))
    else:
        inflated = zlib.decompressobj(31).decompress(partial)
        assert len(inflated) > FIRST // 2  # gzip holds back a little of what it was given
        with pytest.raises(tarfile.ReadError):  # no end-of-archive: not a complete tar
            with tarfile.open(fileobj=io.BytesIO(inflated), mode="r:") as tf:
                tf.getmembers()
    if Path("/proc/self/cwd").exists():
        assert until_no_cat_file(repo_of(served.root, "broken")) == []


def test_a_whole_download_is_exact(served: Served) -> None:
    conn, resp = request(served, "/s/alice/media/archive/?format=zip")
    try:
        data = resp.read()
    finally:
        conn.close()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        want = (served.root / "files" / "alice" / "media" / "clip.bin").read_bytes()
        assert zf.read("media/clip.bin") == want


@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
def test_memory_stays_bounded_on_a_large_file(served: Served, fmt: str) -> None:
    repo = Repository.open(repo_of(served.root, "media"))
    idx = browse.index(repo, browse.resolve(repo, None))
    tracemalloc.start()
    try:
        size = 0
        for block in archive.stream(repo, browse.select(idx, b"."), b".", b"media", fmt):
            size += len(block)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size > (BIG if fmt == "zip" else BIG // 2)
    assert peak < 8 * MiB  # a few blocks in flight, never the file (64 MiB)
