"""The wait runs out by the server's own clock: a real `bluegrass-cloud run` restarted under
`faketime` (libfaketime, preloaded into `run` and the gunicorn it starts), nothing in the
database touched.

alice names bob with a 7-day wait and bob asks, on a server with the real clock. The same
data root is then served by a `run` whose clock says 6 days later (bob still reads nothing),
then one whose clock says 8 days later (bob reads alice's history; alice's log dates the grant
when the 7 days ran out). bob signs in again each time: a session from the real clock is past
its lifetime on the later ones, as it would be.
"""

from __future__ import annotations

import html
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cloud.server import Server
from tests.cloud.test_emergency import LETTER, PASSWORDS
from tests.cloud.web import Browser, cli, commit, configured, set_password, started, write
from tests.conftest import require_tool


def _faked(offset: str) -> dict[str, str]:
    """The environment `faketime -f OFFSET` gives a program (its preload and offset), asked of
    faketime itself so the library's path is the installed one."""
    require_tool("faketime")
    out = subprocess.run(
        ["faketime", "-f", offset, "env"], capture_output=True, text=True, check=True
    ).stdout
    env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return {"LD_PRELOAD": env["LD_PRELOAD"], "FAKETIME": env["FAKETIME"]}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    data = tmp_path / "data"
    cloud = cli(data)
    cloud("init")
    made = configured(data, tmp_path)
    for user in ("alice", "bob", "dave"):
        cloud("user", "add", user, "--json")
    set_password(cloud, "dave", PASSWORDS["dave"], "--admin")
    set_password(cloud, "alice", PASSWORDS["alice"])
    set_password(cloud, "bob", PASSWORDS["bob"])
    write(data / "files" / "alice" / "docs" / "letter.txt", LETTER, 2)
    commit(cloud, "alice", "docs", 2)
    try:
        yield made
    finally:
        if made.proc is not None:
            made.stop()


def _start_faked(server: Server, offset: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as env:
        for key, value in _faked(offset).items():
            env.setenv(key, value)
        server.start()  # `run` and its children inherit the preload; this process does not


def _bob(server: Server) -> Browser:
    bob = Browser(f"http://127.0.0.1:{server.http_port}")
    assert bob.login("bob", PASSWORDS["bob"]).status == 302
    return bob


def test_the_wait_ends_by_the_servers_own_clock(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = f"http://127.0.0.1:{server.http_port}"
    started(server, ["alice/docs"])
    alice = Browser(base)
    assert alice.login("alice", PASSWORDS["alice"]).status == 302
    trusted = alice.submit(
        "/emergency/trusted", {"name": "bob", "days": "7"}, form_page="/emergency/"
    )
    assert trusted.status == 302
    bob = _bob(server)
    assert bob.submit("/emergency/from/alice/request", {}, form_page="/emergency/").status == 302
    assert bob.get("/s/alice/docs/tree/").status == 404
    server.stop()

    _start_faked(server, "+6d", monkeypatch)  # six days on: still waiting
    bob = _bob(server)
    assert bob.get("/s/alice/docs/tree/").status == 404
    assert "requested" in bob.get("/emergency/").text
    server.stop()

    _start_faked(server, "+8d", monkeypatch)  # eight days on: the seven-day wait is over
    bob = _bob(server)
    assert bob.get("/s/alice/docs/tree/").status == 200
    assert bob.get("/s/alice/docs/raw/letter.txt").body == LETTER.encode()
    server.wait_log("emergency access: bob now has read access to alice's history")
    alice = Browser(base)
    assert alice.login("alice", PASSWORDS["alice"]).status == 302
    page = html.unescape(alice.get("/emergency/").text)
    assert "bob may now read your history: the 7-day wait ran out without a refusal." in page
