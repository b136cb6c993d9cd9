"""End to end over real HTTP: gunicorn with two workers, the reference backend, urllib."""

from __future__ import annotations

import http.client
import io
import os
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from http.cookiejar import CookieJar
from urllib.parse import urlencode, urlsplit
from urllib.request import HTTPCookieProcessor, OpenerDirector, build_opener

import pytest
from bluegrass.core.store import Repository, snapshot

from tests.panel.conftest import PASSWORD, World, build_world
from tests.panel.server import gunicorn

ODD_NAME = b"caf\xe9 latin-1.txt"  # not UTF-8: must still be reachable by its exact bytes


@dataclass
class Served:
    base: str
    world: World
    browser: OpenerDirector  # signed in as alice, after a first-run setup over HTTP
    cookies: CookieJar


def form_token(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found
    return found.group(1)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    world = build_world(tmp_path_factory.mktemp("served") / "data")
    odd = world.root / "files" / "alice" / "odd"
    odd.mkdir(parents=True)
    with open(os.fsencode(odd) + b"/" + ODD_NAME, "wb") as out:
        out.write(b"odd bytes\n")
    snapshot(Repository.init(world.root / "repos" / "alice" / "odd.git"), odd)
    with gunicorn(world.root) as base:
        cookies = CookieJar()
        browser = build_opener(HTTPCookieProcessor(cookies))
        first = browser.open(base + "/")
        assert first.url.endswith("/setup")  # followed the redirect: no default password
        form = {"name": "alice", "password": PASSWORD, "confirm": PASSWORD}
        form["csrf_token"] = form_token(first.read().decode())
        done = browser.open(base + "/setup", data=urlencode(form).encode())
        assert done.url == base + "/"
        yield Served(base, world, browser, cookies)


def test_setup_then_browse_and_download_over_real_http(served: Served) -> None:
    base, browser = served.base, served.browser
    assert "alice/docs" in browser.open(base + "/").read().decode()
    # Two workers share the signing key (the data root's panel-secret): every request works.
    for _ in range(6):
        page = browser.open(base + "/s/alice/docs/tree/letters").read().decode()
        assert "to-grandma.txt" in page
    with browser.open(base + "/s/alice/docs/archive/code?format=zip") as resp:
        assert resp.headers["Transfer-Encoding"] == "chunked"  # streamed, no length known
        data = resp.read()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        source = served.world.live["alice/docs"] / "code" / "hello.py"
        assert zf.read("code/hello.py") == source.read_bytes()


def test_a_name_that_is_not_utf8_is_reached_by_its_exact_bytes(served: Served) -> None:
    base, browser = served.base, served.browser
    listing = browser.open(base + "/s/alice/odd/tree/").read().decode()
    assert 'href="/s/alice/odd/blob/caf%E9%20latin-1.txt?at=' in listing
    with browser.open(base + "/s/alice/odd/raw/caf%E9%20latin-1.txt") as resp:
        assert resp.read() == b"odd bytes\n"


@pytest.mark.parametrize(
    "path",
    [
        "/s/alice/docs/raw/../../../../etc/passwd",
        "/s/alice/docs/raw/letters/../../bob/photos/img9.jpg",
        "/s/alice/docs/raw/%2e%2e/%2e%2e/etc/passwd",
        "/s/alice/docs/tree/a%00b",
        "/s/alice/docs/archive/..?format=zip",
        "/s/bob/photos/raw/img9.jpg",
    ],
)
def test_raw_traversal_requests_never_escape(served: Served, path: str) -> None:
    # http.client sends the path exactly as written: no client-side normalisation of "..".
    host = urlsplit(served.base)
    cookie = "; ".join(f"{c.name}={c.value}" for c in served.cookies)
    conn = http.client.HTTPConnection(host.hostname or "", host.port, timeout=10)
    conn.request("GET", path, headers={"Cookie": cookie})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    assert resp.status in (400, 404), (path, resp.status)
    assert b"root:" not in body and b"bob's photo" not in body
