"""Emergency access through the real HTTP port of `bluegrass-cloud run` (decisions 180-184).

A real `run` (gunicorn, 2 workers) over a data root with real histories, driven over HTTP
as a person's browser does (tests.cloud.web.Browser: cookies, CSRF tokens, no redirects):

- alice owns `docs` and names bob as a trusted person; bob has his own account and segment;
- dave (the administrator) has a segment of his own that bob must never read;
- eve is a user without a web login, so she cannot be anyone's trusted person.

The clock: the server decides "the wait has run out" from its own time. These tests move
that clock by rewriting the request's stored time (`emergency_requests.requested`, moved
back by the wait and a minute) in the real database the server reads; nothing else is
touched, and the grant itself (its log entry included) is made by the server.
"""

from __future__ import annotations

import html
import io
import sqlite3
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cloud.server import Server
from tests.cloud.web import Browser, Run, cli, commit, set_password, start, write

PASSWORDS = {
    "alice": "alice's long password",
    "bob": "bob's own long password",
    "dave": "dave administers this",
}
LETTER = "Dear Grandma,\r\nthe letter bob may read — café\r\n"
DAY = 86400


@dataclass
class Site:
    data: Path
    cloud: Run
    server: Server
    commits: dict[str, str]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.http_port}"

    def signed_in(self, name: str) -> Browser:
        browser = Browser(self.base)
        page = browser.login(name, PASSWORDS[name])
        assert page.status == 302, page.text
        return browser

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.data / "bluegrass.db", isolation_level=None)

    def rows(self, sql: str, *args: object) -> list[tuple[object, ...]]:
        with self.db() as db:
            return db.execute(sql, args).fetchall()

    def move_clock(self, owner: str, grantee: str, days: float) -> None:
        """The server's clock, as this pair's records see it, moved on by `days`: the open
        request's stored time, and the pair's earlier times (when named, the log), go back
        that far, so the log reads as it would have."""
        back = days * DAY
        with self.db() as db:
            changed = db.execute(
                "UPDATE emergency_requests SET requested = requested - ?"
                " WHERE owner = ? AND grantee = ? AND state = 'waiting'",
                (back, owner, grantee),
            ).rowcount
            db.execute(
                "UPDATE emergency_contacts SET added = added - ? WHERE owner = ? AND grantee = ?",
                (back, owner, grantee),
            )
            db.execute(
                "UPDATE emergency_log SET at = at - ? WHERE owner = ? AND grantee = ?",
                (back, owner, grantee),
            )
        assert changed == 1

    def events(self, owner: str) -> list[str]:
        rows = self.rows("SELECT event FROM emergency_log WHERE owner = ? ORDER BY id", owner)
        return [str(r[0]) for r in rows]

    def live(self, user: str, segment: str = "docs") -> Path:
        return self.data / "files" / user / segment

    def snapshots(self, user: str) -> int:
        return len(self.cloud("log", user, "docs", "--json").stdout.split('"commit"')) - 1


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("emergency")
    data = tmp / "data"
    cloud = cli(data)
    cloud("init")
    for user in ("alice", "bob", "dave", "eve"):
        cloud("user", "add", user, "--json")
    set_password(cloud, "dave", PASSWORDS["dave"], "--admin")
    set_password(cloud, "alice", PASSWORDS["alice"])
    set_password(cloud, "bob", PASSWORDS["bob"])
    commits = {}
    write(data / "files" / "alice" / "docs" / "letters" / "grandma.txt", LETTER, 5)
    write(data / "files" / "alice" / "docs" / "notes.md", "# alice's notes\n", 5)
    commits["alice"] = commit(cloud, "alice", "docs", 5)
    write(data / "files" / "bob" / "docs" / "bob.txt", "bob's own\n", 4)
    commits["bob"] = commit(cloud, "bob", "docs", 4)
    write(data / "files" / "dave" / "docs" / "dave.txt", "dave's secret\n", 4)
    commits["dave"] = commit(cloud, "dave", "docs", 4)
    server = start(data, tmp, ["alice/docs", "bob/docs", "dave/docs"])
    try:
        yield Site(data, cloud, server, commits)
    finally:
        server.stop()


def _reads(commit: str) -> list[str]:
    return [
        "tree/",
        "tree/letters",
        "blob/letters/grandma.txt",
        "raw/letters/grandma.txt",
        "history/letters/grandma.txt",
        f"commit/{commit}",
        "search?q=grandma",
        "archive/?format=zip",
    ]


def _trust(alice: Browser, name: str, days: str) -> None:
    page = alice.submit("/emergency/trusted", {"name": name, "days": days}, form_page="/emergency/")
    assert page.status == 302, page.text


def test_bad_input_is_a_clear_error_and_nothing_is_stored(site: Site) -> None:
    alice = site.signed_in("alice")
    cases = {
        ("alice", "7"): "cannot name yourself",
        ("nobody", "7"): "no user 'nobody' with a web login",
        ("eve", "7"): "no user 'eve' with a web login",  # a user, but no web account
        ("<b>x</b>", "7"): "no user '<b>x</b>'",  # shown as text (escaped), never markup
        ("bob", "0"): "whole number of days from 1 to 90, not 0",
        ("bob", "91"): "whole number of days from 1 to 90, not 91",
        ("bob", "1.5"): "whole number of days from 1 to 90, not '1.5'",
        ("bob", "seven"): "whole number of days from 1 to 90, not 'seven'",
        ("bob", "-3"): "whole number of days from 1 to 90, not '-3'",
        ("bob", ""): "whole number of days from 1 to 90",
    }
    for (name, days), message in cases.items():
        page = alice.submit(
            "/emergency/trusted", {"name": name, "days": days}, form_page="/emergency/"
        )
        assert page.status == 400, (name, days, page.status)
        assert message in html.unescape(page.text), (name, days, page.text[:3000])
        assert "<b>x</b>" not in page.text
    # A request to oneself is refused; to a non-user, or someone who never named you, it is
    # not found (the same answer: whether a name is a user does not leak). Nothing stored.
    own = alice.submit("/emergency/from/alice/request", {}, form_page="/emergency/")
    assert own.status == 400
    assert "cannot ask for emergency access to your own history" in own.text
    for owner in ("bob", "nobody"):
        page = alice.submit(f"/emergency/from/{owner}/request", {}, form_page="/emergency/")
        assert page.status == 404
        assert f"No user {owner!r} has named you" in html.unescape(page.text)
    assert site.rows("SELECT * FROM emergency_contacts") == []
    assert site.rows("SELECT * FROM emergency_requests") == []
    assert site.rows("SELECT * FROM emergency_log") == []


def test_a_refused_request_grants_nothing_even_after_the_wait(site: Site) -> None:
    alice, bob = site.signed_in("alice"), site.signed_in("bob")
    _trust(alice, "bob", "7")
    page = bob.get("/emergency/")
    assert "alice" in page.text and "Request access" in page.text
    asked = bob.submit("/emergency/from/alice/request", {}, form_page="/emergency/")
    assert asked.status == 302, asked.text
    # The owner is told at once: first thing on her dashboard, and in the server's log.
    board = alice.get("/").text
    assert "bob asked for emergency access to your history" in board
    assert board.index("Needs attention") < board.index("Segments")
    site.server.wait_log("emergency access: bob asked for access to alice's history")
    assert "bob" in alice.get("/emergency/").text
    refused = alice.submit("/emergency/trusted/bob/end", {}, form_page="/emergency/")
    assert refused.status == 302
    # The wait moved past (the stored time of the request, back 8 days): still nothing.
    with site.db() as db:
        db.execute("UPDATE emergency_requests SET requested = requested - ?", (8 * DAY,))
    for view in _reads(site.commits["alice"]):
        assert bob.get(f"/s/alice/docs/{view}").status == 404, view
    assert "alice/" not in bob.get("/s/").text
    assert site.rows("SELECT state FROM emergency_requests") == [("refused",)]
    assert site.events("alice") == ["added", "requested", "refused"]
    # Cleanup for the tests after: bob is no longer trusted.
    assert alice.submit("/emergency/trusted/bob/remove", {}, form_page="/emergency/").status == 302


def test_after_the_wait_the_grantee_reads_that_owners_history_only_and_writes_nothing(
    site: Site,
) -> None:
    alice = site.signed_in("alice")
    bob = site.signed_in("bob")  # a session opened before the grant: it gains and loses it
    _trust(alice, "bob", "3")
    assert bob.submit("/emergency/from/alice/request", {}, form_page="/emergency/").status == 302
    tree = "/s/alice/docs/tree/"
    assert bob.get(tree).status == 404  # still waiting
    site.move_clock("alice", "bob", 3 + 1 / 1440)  # the wait plus a minute
    assert bob.get(tree).status == 200
    for view in _reads(site.commits["alice"]):
        page = bob.get(f"/s/alice/docs/{view}")
        assert page.status == 200, (view, page.text[:500])
    raw = bob.get("/s/alice/docs/raw/letters/grandma.txt")
    assert raw.body == LETTER.encode()
    archive = zipfile.ZipFile(io.BytesIO(bob.get("/s/alice/docs/archive/letters?format=zip").body))
    assert archive.read("letters/grandma.txt") == LETTER.encode()
    listing = bob.get("/s/").text
    assert "alice/docs" in listing and "bob/docs" in listing and "dave/" not in listing
    # Nobody else's data: dave's segment is as invisible as before.
    for view in ("tree/", "raw/dave.txt", f"commit/{site.commits['dave']}", "archive/"):
        assert bob.get(f"/s/dave/docs/{view}").status == 404, view
    # Every write is refused: restore into alice's live tree, a snapshot of it, her
    # trusted people, administration.
    before = site.live("alice").joinpath("notes.md").read_bytes()
    snapshots = site.snapshots("alice")
    restore = bob.submit(
        f"/s/alice/docs/restore/notes.md?at={site.commits['alice']}",
        {"target": "live"},
        form_page=f"/s/alice/docs/tree/?at={site.commits['alice']}",
    )
    assert restore.status in (400, 403) and "read-only" in restore.text, restore.text[:500]
    # Typed by hand, the restore page offers the downloads and no form to put anything back.
    offered = bob.get(f"/s/alice/docs/restore/notes.md?at={site.commits['alice']}")
    assert offered.status == 200 and "The file" in offered.text
    assert "Put it back" not in offered.text and 'name="target"' not in offered.text
    job = bob.submit("/jobs", {"kind": "commit", "user": "alice", "segment": "docs"}, form_page="/")
    assert job.status == 302 and "/jobs/" not in job.location
    assert "read-only" in bob.get("/").text
    for url in ("/emergency/trusted/bob/end", "/emergency/trusted/bob/remove"):
        # bob ending "bob" speaks of his own trusted people (none): alice's grant stays.
        assert bob.submit(url, {}, form_page="/emergency/").status == 404
    added = bob.submit(
        "/admin/users",
        {"name": "mallory", "password": "x" * 12, "confirm": "x" * 12},
        form_page="/emergency/",
    )
    assert added.status == 403
    assert bob.submit("/admin/users/alice/enroll", {}, form_page="/").status == 403
    assert bob.get("/admin/users").status == 403
    assert site.live("alice").joinpath("notes.md").read_bytes() == before
    assert site.snapshots("alice") == snapshots
    assert not (site.data / "files" / "mallory").exists()
    # Alice sees every step, the read once for this session, however many pages it opened.
    page = alice.get("/emergency/").text
    assert "bob opened your history" in page and "can read" in page
    assert site.events("alice")[-4:] == ["added", "requested", "granted", "accessed"]
    # She ends it; bob's open session loses access on its next request.
    assert alice.submit("/emergency/trusted/bob/end", {}, form_page="/emergency/").status == 302
    for view in _reads(site.commits["alice"]):
        assert bob.get(f"/s/alice/docs/{view}").status == 404, view
    assert "alice/" not in bob.get("/s/").text
    assert site.events("alice")[-1] == "ended"
    # A new request and a new wait; then removing bob ends that access too, at once.
    assert bob.submit("/emergency/from/alice/request", {}, form_page="/emergency/").status == 302
    site.move_clock("alice", "bob", 3.01)
    assert bob.get(tree).status == 200
    assert alice.submit("/emergency/trusted/bob/remove", {}, form_page="/emergency/").status == 302
    assert bob.get(tree).status == 404
    assert bob.get("/s/alice/docs/raw/letters/grandma.txt").status == 404
    assert site.events("alice")[-4:] == ["requested", "granted", "accessed", "removed"]
    assert site.rows("SELECT state FROM emergency_requests WHERE owner = 'alice' ORDER BY id")[
        -2:
    ] == [("ended",), ("ended",)]
