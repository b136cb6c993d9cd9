"""Fixtures for the panel: a real data root built with the real store, and signed-in clients.

The data root is the panel's reference backend's layout (bluegrass.panel.reference): live
trees under files/, histories under repos/ written by bluegrass.core.store.snapshot with
dated snapshots, so "as of last week" has something to find.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from bluegrass.core.store import Repository, snapshot
from bluegrass.panel import PanelConfig, create_app
from bluegrass.panel.reference import ReferenceBackend, reference_backend
from flask import Flask
from flask.testing import FlaskClient

PASSWORD = "correct horse battery"
XSS_NAME = "<img src=x onerror=alert(1)>.txt"
HTML_PAGE = (
    "<!doctype html><html><head><title>user page</title></head><body><p id=p>static text</p>"
    "<script>document.title='PWNED'; try { localStorage.setItem('pwned', '1') } catch (e) {}"
    " try { parent.document.title='PWNED' } catch (e) {}</script></body></html>"
)


def tiny_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\0" + b"\xff\x00\x00" * 4 for _ in range(4))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


MINI_PDF = (
    b"%PDF-1.1\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)


@dataclass
class World:
    root: Path
    now: datetime
    commits: dict[str, str] = field(default_factory=dict)  # label -> commit id
    live: dict[str, Path] = field(default_factory=dict)  # "user/segment" -> live tree


def _write(path: Path, data: bytes | str, mtime: datetime | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime.timestamp(), mtime.timestamp()))


def build_world(root: Path) -> World:
    """alice/docs: four dated snapshots; bob/photos: one normal and one suspicious."""
    now = datetime.now(UTC).replace(microsecond=0)
    world = World(root, now)
    docs = root / "files" / "alice" / "docs"
    repo = Repository.init(root / "repos" / "alice" / "docs.git")
    world.live["alice/docs"] = docs

    day = [now - timedelta(days=d) for d in (20, 8, 3)]
    _write(docs / "letters" / "to-grandma.txt", "Dear Grandma,\nversion one\n", day[0])
    _write(docs / "notes.md", "# Notes\n\n* first\n", day[0])
    _write(docs / "code" / "hello.py", "def hello():\n    return 'hi'  # greet\n", day[0])
    (docs / "empty").mkdir()
    # Enough unchanged files that later snapshots stay under the "suspicious" share (30 %).
    for i in range(10):
        _write(docs / "archive" / f"old-{i:02d}.txt", f"archived {i}\n", day[0])
    world.commits["first"] = snapshot(repo, docs, when=day[0]).commit or ""

    _write(docs / "letters" / "to-grandma.txt", "Dear Grandma,\nversion two (last week)\n", day[1])
    _write(docs / "photo.png", tiny_png(), day[1])
    _write(docs / "report.pdf", MINI_PDF, day[1])
    _write(docs / "page.html", HTML_PAGE, day[1])
    _write(docs / XSS_NAME, "harmless text\n", day[1])
    _write(docs / ".git" / "config", "[core]\n\tfsmonitor = evil\n", day[1])
    _write(docs / "résumé 100%.txt", "accents and a percent sign\n", day[1])
    _write(docs / "run.sh", "#!/bin/sh\necho hi\n", day[1])
    (docs / "run.sh").chmod(0o755)
    (docs / "link").symlink_to("notes.md")
    _write(docs / "old-draft.txt", "to be deleted\n", day[1])
    world.commits["last_week"] = snapshot(repo, docs, when=day[1]).commit or ""

    _write(docs / "letters" / "to-grandma.txt", "Dear Grandma,\nversion three\n", day[2])
    (docs / "old-draft.txt").unlink()
    world.commits["recent"] = snapshot(repo, docs, when=day[2]).commit or ""

    _write(docs / "letters" / "to-grandma.txt", "Dear Grandma,\nversion four (today)\n", now)
    world.commits["today"] = snapshot(repo, docs, when=now).commit or ""

    photos = root / "files" / "bob" / "photos"
    brepo = Repository.init(root / "repos" / "bob" / "photos.git")
    world.live["bob/photos"] = photos
    for i in range(10):
        _write(photos / f"img{i}.jpg", f"bob's photo {i}\n", day[0])
    world.commits["bob_first"] = snapshot(brepo, photos, when=day[0]).commit or ""
    for i in range(8):
        (photos / f"img{i}.jpg").unlink()
    world.commits["bob_suspicious"] = snapshot(brepo, photos, when=day[2]).commit or ""
    (root / "repos" / "carol").mkdir(parents=True)
    return world


@pytest.fixture(scope="session")
def world_template(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("world-template") / "data")


@pytest.fixture
def world(tmp_path: Path, world_template: World) -> World:
    """A private copy of the data root (tests restore into it and add accounts)."""
    root = tmp_path / "data"
    shutil.copytree(world_template.root, root, symlinks=True)
    return World(
        root,
        world_template.now,
        dict(world_template.commits),
        {k: root / v.relative_to(world_template.root) for k, v in world_template.live.items()},
    )


def add_accounts(backend: ReferenceBackend) -> None:
    admin = backend.complete_setup("alice", PASSWORD, None)
    backend.add_user(admin, "bob", PASSWORD, admin=False)


def make_app(world: World, mode: str = "cloud", *, setup: bool = True) -> Flask:
    backend = reference_backend(world.root, mode)  # type: ignore[arg-type]
    if setup:
        add_accounts(backend)
    app = create_app(PanelConfig(backend=backend, secret_key="test-secret-key-0123456789"))
    app.testing = True
    return app


TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(client: FlaskClient, url: str) -> str:
    page = client.get(url)
    found = TOKEN.search(page.get_data(as_text=True))
    assert found, f"no CSRF token in {url}"
    return found.group(1)


def login(client: FlaskClient, name: str, password: str = PASSWORD) -> None:
    token = csrf_of(client, "/login")
    resp = client.post("/login", data={"name": name, "password": password, "csrf_token": token})
    assert resp.status_code == 302, resp.get_data(as_text=True)


@pytest.fixture
def cloud_app(world: World) -> Flask:
    return make_app(world, "cloud")


@pytest.fixture
def alice(cloud_app: Flask) -> Iterator[FlaskClient]:
    with cloud_app.test_client() as client:
        login(client, "alice")
        yield client


@pytest.fixture
def client_for(cloud_app: Flask) -> Callable[[str], FlaskClient]:
    def make(name: str) -> FlaskClient:
        client = cloud_app.test_client()
        login(client, name)
        return client

    return make
