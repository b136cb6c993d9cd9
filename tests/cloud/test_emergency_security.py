"""Emergency access under attack, against a real `bluegrass-cloud run` over HTTP (as
tests/security/test_web.py attacks the panel): a grantee with a live grant reaching for other
users' data through path parameters, forms posted without their session's CSRF token, and
emergency routes given names that are not names.

The setup is tests.cloud.test_emergency's: alice trusts bob; dave's segment is nobody's
business but his. The grant is made by moving the server's clock as that module does (the
request's stored time moved back by the wait), then the server grants it itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from bluegrass.panel.backend import EmergencyAccess

from tests.cloud.test_emergency import Site, site  # noqa: F401 - the module's fixture
from tests.cloud.web import Browser
from tests.panel.conftest import build_world, csrf_of, login, make_app

pytestmark = pytest.mark.usefixtures("site")


@pytest.fixture(scope="module")
def granted(site: Site) -> tuple[Browser, Browser]:  # noqa: F811
    alice, bob = site.signed_in("alice"), site.signed_in("bob")
    page = alice.submit("/emergency/trusted", {"name": "bob", "days": "2"}, form_page="/emergency/")
    assert page.status == 302
    assert bob.submit("/emergency/from/alice/request", {}, form_page="/emergency/").status == 302
    site.move_clock("alice", "bob", 2.01)
    assert bob.get("/s/alice/docs/tree/").status == 200
    return alice, bob


PROBES = [
    "/s/dave/docs/tree/",
    "/s/dave/docs/raw/dave.txt",
    "/s/dave/docs/archive/?format=tar.gz",
    "/s/dav%65/docs/raw/dave.txt",
    "/s/DAVE/docs/raw/dave.txt",
    "/s/alice/../dave/docs/raw/dave.txt",
    "/s/alice/docs/raw/../../dave/docs/dave.txt",
    "/s/alice/docs/raw/..%2F..%2Fdave%2Fdocs%2Fdave.txt",
    "/s/alice/docs/raw/%2e%2e/%2e%2e/dave/docs/dave.txt",
    "/s/alice/..%2Fdave/tree/",
    "/s/alice%2Fdocs/dave/tree/",
    "/s/alice/docs/raw//etc/passwd",
    "/s/alice/docs/tree/?at=" + "../" * 10,
    "/s/alice/docs/archive/..?format=zip",
    "/s/alice/docs/raw/%00dave.txt",
]


@pytest.mark.parametrize("probe", PROBES)
def test_a_grantee_never_reaches_another_users_data(
    site: Site,  # noqa: F811
    granted: tuple[Browser, Browser],
    probe: str,
) -> None:
    _, bob = granted
    page = bob.get(probe)
    assert page.status in (400, 404), (probe, page.status, page.text[:300])
    assert b"dave's secret" not in page.body and b"root:" not in page.body


def test_a_grantee_cannot_see_the_owners_jobs_devices_or_account(
    site: Site,  # noqa: F811
    granted: tuple[Browser, Browser],
) -> None:
    alice, bob = granted
    started = alice.submit(
        "/jobs", {"kind": "commit", "user": "alice", "segment": "docs"}, form_page="/"
    )
    assert started.status == 302 and "/jobs/" in started.location, started.text
    job = started.location[started.location.index("/jobs/") :]
    assert bob.get(job).status == 404
    assert bob.get(job + ".json").status == 404
    assert bob.get("/admin/users").status == 403
    # bob's dashboard is his own: none of alice's segments' state, storage or problems.
    board = bob.get("/").text
    assert "alice/docs" not in board and "read-only emergency access to alice" in board
    # Nor alice's emergency page: bob sees only whom he trusts and who trusts him.
    page = bob.get("/emergency/").text
    assert "bob opened your history" not in page


def test_forms_without_their_sessions_csrf_token_change_nothing(
    site: Site,  # noqa: F811
    granted: tuple[Browser, Browser],
) -> None:
    alice, bob = granted
    other = site.signed_in("alice")  # another session of the same person: its token is not hers
    before = (
        site.rows("SELECT * FROM emergency_contacts"),
        site.rows("SELECT * FROM emergency_requests"),
    )
    log = site.events("alice")
    posts = [
        (alice, "/emergency/trusted", {"name": "dave", "days": "1"}),
        (alice, "/emergency/trusted/bob/end", {}),
        (alice, "/emergency/trusted/bob/remove", {}),
        (bob, "/emergency/from/alice/request", {}),
    ]
    for browser, url, data in posts:
        for token in ({}, {"csrf_token": other.token("/emergency/")}, {"csrf_token": "x" * 40}):
            page = browser.post(url, {**data, **token})
            assert page.status == 400 and "did not come from this page" in page.text, url
        # And never by GET.
        assert browser.get(url).status == 405, url
    after = (
        site.rows("SELECT * FROM emergency_contacts"),
        site.rows("SELECT * FROM emergency_requests"),
    )
    assert after == before
    assert site.events("alice") == log
    assert bob.get("/s/alice/docs/tree/").status == 200  # the grant is untouched


@pytest.mark.parametrize(
    "url",
    [
        "/emergency/trusted/..%2Fbob/end",
        "/emergency/trusted/bob%0A/remove",
        "/emergency/trusted/BOB/end",
        "/emergency/trusted/%62ob%00/remove",
        "/emergency/from/..%2Falice/request",
        "/emergency/from/dave/request",
        "/emergency/from/alice%0Ainjected/request",
    ],
)
def test_emergency_routes_take_only_real_names(
    site: Site,  # noqa: F811
    granted: tuple[Browser, Browser],
    url: str,
) -> None:
    alice, bob = granted
    who = bob if "/from/" in url else alice
    contacts = site.rows("SELECT * FROM emergency_contacts")
    requests = site.rows("SELECT * FROM emergency_requests")
    page = who.submit(url, {}, form_page="/emergency/")
    assert page.status in (400, 404), (url, page.status)
    assert site.rows("SELECT * FROM emergency_contacts") == contacts
    assert site.rows("SELECT * FROM emergency_requests") == requests
    assert "injected" not in site.server.log()


@pytest.mark.parametrize("mode", ["cloud", "pi"])
def test_a_backend_without_emergency_access_has_no_such_page(tmp_path: Path, mode: str) -> None:
    """The reference backend (and so the Pi's shape) implements no EmergencyAccess: no menu
    entry, 404 from every emergency URL, and its own pages as before."""
    app = make_app(build_world(tmp_path / "data"), mode)
    assert not isinstance(app.extensions["bluegrass"].backend, EmergencyAccess)
    with app.test_client() as client:
        login(client, "alice")
        assert "Emergency access" not in client.get("/").get_data(as_text=True)
        token = csrf_of(client, "/")
        assert client.get("/emergency/").status_code == 404
        for url in (
            "/emergency/trusted",
            "/emergency/trusted/bob/end",
            "/emergency/from/bob/request",
        ):
            assert (
                client.post(url, data={"csrf_token": token, "name": "bob", "days": "7"}).status_code
                == 404
            )
        assert client.get("/s/alice/docs/tree/").status_code == 200
