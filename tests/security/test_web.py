"""The web panel's attacks from the security review (issue 13, findings 4, 5, 6, 9, 13), each
against a real gunicorn serving the panel on loopback, driven over HTTP.

- 4: /login?next=… must never send the browser to another site.
- 5: /account's current-password check counts failures as sign-in does.
- 6: signing out ends the session on the server; a copied cookie is useless afterwards, and a
  session has an absolute lifetime as well as an idle one.
- 9: every name the store can hold (CR, LF, tab, other control characters, bytes that are
  not UTF-8, escaped names, %, ?, #, a leading -, 255 bytes) works on every route, and no
  log line or header carries a raw control character.
- 13: `at=` before the first snapshot is a 404 that names the first snapshot's date.

Sessions and the account rate limit run on the three machines that serve the panel (the
reference backend, the cloud, the Pi); the rest is the panel's own code, served over the
reference backend.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote, urljoin, urlsplit

import pytest
from bluegrass.core.store import Repository, snapshot

from tests.conftest import require_tool
from tests.support.panel import (
    KINDS,
    PASSWORD,
    Browser,
    Machine,
    Page,
    make_machine,
    replay,
    served,
    sql,
)

NEW_PASSWORD = "another good passphrase"


@dataclass
class Serving:
    machine: Machine
    base: str


@pytest.fixture(params=KINDS)
def machine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Serving]:
    made = make_machine(request.param, tmp_path / request.param)
    with served(made) as base:
        yield Serving(made, base)


def signed_in(base: str) -> Browser:
    browser = Browser(base)
    page = browser.login()
    assert page.status == 302, page.text[:2000]
    assert browser.get("/account").status == 200
    return browser


# -- 4: open redirect ------------------------------------------------------------------------


def as_browser_reads(base: str, location: str) -> tuple[str, str]:
    """(scheme, host) a WHATWG browser goes to for `location` on `base`: it drops tabs and
    newlines anywhere, trims C0 controls and spaces at the ends, and reads `\\` as `/`."""
    cleaned = re.sub(r"[\t\n\r]", "", location).strip("\x00- ").replace("\\", "/")
    target = urlsplit(urljoin(base + "/login", cleaned))
    return target.scheme, target.netloc


NEXTS = [
    "/%09/evil.example",
    "/%0a/evil.example",
    "/%0d/evil.example",
    "%09//evil.example",
    "//evil.example",
    "/\\evil.example",
    "\\/evil.example",
    "/%5cevil.example",
    "https://evil.example/",
    "%20//evil.example",
    "/%00/evil.example",
    "javascript:alert(1)",
    "/%E3%80%80/evil.example",
]


@pytest.mark.parametrize("target", NEXTS)
def test_sign_in_never_redirects_to_another_site(tmp_path: Path, target: str) -> None:
    made = make_machine("reference", tmp_path)
    with served(made) as base:
        page = Browser(base).login(query="?next=" + target)
        assert page.status == 302, page.text[:2000]
        scheme, host = as_browser_reads(base, page.location)
        assert (scheme, host) == ("http", urlsplit(base).netloc), page.location
        # Not only on this site: to the home page, not to some path made of the attack.
        assert urlsplit(urljoin(base + "/", page.location)).path == "/", page.location


# No host name but loopback resolves: whatever Chromium would reach elsewhere is never sent.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--no-first-run",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
BROWSER_NEXTS = ["/%09/evil.example", "/%0a/evil.example", "//evil.example", "/\\evil.example"]


def test_a_real_browser_signing_in_lands_on_this_sites_home(tmp_path: Path) -> None:
    """Chromium reads the Location itself. It refuses a cross-site redirect after a form POST
    (the panel's CSP has form-action 'self'), so on the old code sign-in ended on an error
    page; browsers that do not apply form-action to redirects went to evil.example."""
    playwright_sync = pytest.importorskip("playwright.sync_api")
    chromium = require_tool("chromium")
    made = make_machine("reference", tmp_path)
    with served(made) as base, playwright_sync.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            for target in BROWSER_NEXTS:
                context = browser.new_context(base_url=base)
                tab = context.new_page()
                asked: list[str] = []
                tab.on("request", lambda request, asked=asked: asked.append(request.url))
                tab.goto("/login?next=" + target)
                tab.get_by_label("Name").fill("alice")
                tab.get_by_label("Password").fill(PASSWORD)
                try:
                    with tab.expect_navigation():
                        tab.get_by_role("button", name="Sign in").click()
                except playwright_sync.Error as exc:
                    pytest.fail(f"next={target}: sign-in did not land: {exc.message}")
                assert tab.url == base + "/", (target, tab.url)
                assert all(urlsplit(url).netloc == urlsplit(base).netloc for url in asked), asked
                context.close()
        finally:
            browser.close()


def test_sign_in_still_returns_to_the_page_asked_for(tmp_path: Path) -> None:
    made = make_machine("reference", tmp_path)
    with served(made) as base:
        browser = Browser(base)
        asked = browser.get("/account?tab=password")
        assert asked.status == 302
        login_url = urlsplit(asked.location)
        assert login_url.path == "/login"
        page = browser.login(query="?" + login_url.query)
        assert page.status == 302
        assert page.location == "/account?tab=password"


# -- 5: /account's current password is rate limited ------------------------------------------


def test_account_password_guessing_is_locked_out_like_sign_in(machine: Serving) -> None:
    browser = signed_in(machine.base)
    for i in range(5):
        wrong = browser.submit(
            "/account",
            {"current": f"wrong guess {i}", "password": NEW_PASSWORD, "confirm": NEW_PASSWORD},
        )
        assert wrong.status == 401, wrong.text[:2000]
    right = browser.submit(
        "/account", {"current": PASSWORD, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD}
    )
    assert right.status == 429, right.text[:2000]
    assert "Too many failed" in right.text
    # The same count as sign-in: a new sign-in as alice is locked too, the right password
    # included, and the password was not changed (the new one does not sign in either).
    assert Browser(machine.base).login().status == 429
    assert Browser(machine.base).login(password=NEW_PASSWORD).status == 429


# -- 6: sessions end on the server ------------------------------------------------------------


def test_a_cookie_copied_before_sign_out_is_refused_after_it(machine: Serving) -> None:
    browser = signed_in(machine.base)
    stolen = browser.cookie_header()
    assert replay(machine.base, stolen, "/account").status == 200  # the copy works, for now
    out = browser.submit("/logout", {}, form_page="/account")
    assert out.status == 302
    again = replay(machine.base, stolen, "/account")
    assert again.status == 302 and urlsplit(again.location).path == "/login"
    # Nor can the copy sign out, post or read anything else.
    assert replay(machine.base, stolen, "/").status == 302


def test_a_password_change_ends_every_other_session(machine: Serving) -> None:
    mine = signed_in(machine.base)
    other = signed_in(machine.base)
    other_cookie = other.cookie_header()
    changed = mine.submit(
        "/account", {"current": PASSWORD, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD}
    )
    assert changed.status == 302, changed.text[:2000]
    assert mine.get("/account").status == 200  # the session that changed it goes on
    assert other.get("/account").status == 302
    assert replay(machine.base, other_cookie, "/account").status == 302


def test_a_session_ends_after_its_absolute_lifetime_however_busy(machine: Serving) -> None:
    browser = signed_in(machine.base)
    cookie = browser.cookie_header()
    # Eight days ago, as if the browser had stayed open and busy all week: the session was
    # used a moment ago, so only its age can end it.
    eight_days = (timedelta(days=8)).total_seconds()
    sql(machine.machine.database, "UPDATE web_sessions SET created = created - ?", eight_days)
    assert browser.get("/account").status == 302
    assert replay(machine.base, cookie, "/account").status == 302


def test_a_session_idle_too_long_ends_on_the_server(machine: Serving) -> None:
    browser = signed_in(machine.base)
    cookie = browser.cookie_header()
    thirteen_hours = timedelta(hours=13).total_seconds()
    sql(machine.machine.database, "UPDATE web_sessions SET seen = seen - ?", thirteen_hours)
    # The cookie itself is still valid by its signature: only the server's record ends it.
    assert replay(machine.base, cookie, "/account").status == 302


# -- 9 and 13: names and dates on every route -----------------------------------------------

ODD_NAMES = [
    b"cr\rname.txt",
    b"lf\nname.txt",
    b"tab\tname.txt",
    b"bell\x07esc\x1b[31mred.txt",
    b"del\x7fname.txt",
    b"caf\xe9 latin-1.txt",
    b"\xff\xfe not utf-8",
    b"%%starts-with-the-escape-marker",
    b".gitmodules",
    b"100% sure.txt",
    b"what?.txt",
    b"hash#tag.txt",
    b"-rf",
    b"--output=x",
    b"x" * 251 + b".txt",
]
ODD_FOLDER = b"folder\nwith\rbreaks"


@dataclass
class Odd:
    base: str
    log: Path
    first: datetime
    commit: str


@pytest.fixture(scope="module")
def odd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Odd]:
    tmp = tmp_path_factory.mktemp("odd")
    made = make_machine("reference", tmp)
    root = Path(made.env["BLUEGRASS_PANEL_DATA"])
    live = os.fsencode(root / "files" / "alice" / "odd")
    os.makedirs(live + b"/" + ODD_FOLDER)
    for name in ODD_NAMES:
        with open(live + b"/" + name, "wb") as out:
            out.write(b"content of " + name)
        with open(live + b"/" + ODD_FOLDER + b"/" + name, "wb") as out:
            out.write(b"inside: " + name)
    first = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)
    repo = Repository.init(root / "repos" / "alice" / "odd.git")
    commit = snapshot(repo, Path(os.fsdecode(live)), when=first).commit or ""
    with served(made) as base:
        yield Odd(base, made.log, first, commit)


def url_of(path: bytes) -> str:
    return quote(path, safe="/")


def check_headers(page: Page) -> None:
    for key, value in page.headers.items():
        assert not re.search(r"[\x00-\x1f\x7f]", value), (key, value)


@pytest.mark.parametrize("name", ODD_NAMES + [ODD_FOLDER + b"/" + n for n in ODD_NAMES[:3]])
def test_every_route_serves_every_name_the_store_holds(odd: Odd, name: bytes) -> None:
    browser = signed_in(odd.base)
    base = "/s/alice/odd/"
    parent = name.rsplit(b"/", 1)[0] if b"/" in name else b""
    listing = browser.get(base + "tree/" + url_of(parent))
    assert listing.status == 200, listing.text[:2000]
    assert f'href="{base}blob/{url_of(name)}?at=' in listing.text
    expected = (b"inside: " if parent else b"content of ") + name.rsplit(b"/", 1)[-1]
    at = "?at=" + odd.commit
    for view in ("blob", "history", "diff", "restore"):
        page = browser.get(base + view + "/" + url_of(name) + at)
        assert page.status == 200, (view, page.status, page.text[:2000])
        check_headers(page)
    raw = browser.get(base + "raw/" + url_of(name) + at)
    assert raw.status == 200, raw.text[:2000]
    assert raw.body == expected
    check_headers(raw)
    assert raw.headers["Content-Disposition"].startswith("attachment;")
    preview = browser.get(base + "preview/" + url_of(name) + at)
    assert preview.status in (200, 302), preview.text[:2000]
    check_headers(preview)
    if preview.status == 302:
        assert urlsplit(preview.location).path == base + "raw/" + url_of(name)
    for fmt in ("zip", "tar.gz"):
        download = browser.get(base + "archive/" + url_of(name) + at + "&format=" + fmt)
        assert download.status == 200, download.text[:2000]
        check_headers(download)
        if fmt == "zip":
            with zipfile.ZipFile(io.BytesIO(download.body)) as zf:
                [member] = zf.infolist()
                assert zf.read(member) == expected
        else:
            with tarfile.open(fileobj=io.BytesIO(download.body)) as tf:
                [member] = tf.getmembers()
                extracted = tf.extractfile(member)
                assert extracted is not None and extracted.read() == expected
    found = browser.get(base + "search?q=" + quote(name.rsplit(b"/", 1)[-1][:20]))
    assert found.status == 200, found.text[:2000]


def test_a_file_named_with_breaks_is_restored_into_the_live_tree(tmp_path: Path) -> None:
    """The POST half of a single-file page: restoring a name with CR and LF (in a folder
    with them too) as of a snapshot puts its bytes back, and the answer's redirect is clean."""
    made = make_machine("reference", tmp_path)
    root = Path(made.env["BLUEGRASS_PANEL_DATA"])
    live = os.fsencode(root / "files" / "alice" / "odd")
    name = ODD_FOLDER + b"/" + b"cr\rlf\nname.txt"
    os.makedirs(live + b"/" + ODD_FOLDER)
    with open(live + b"/" + name, "wb") as out:
        out.write(b"as it was")
    repo = Repository.init(root / "repos" / "alice" / "odd.git")
    commit = snapshot(repo, Path(os.fsdecode(live))).commit or ""
    with open(live + b"/" + name, "wb") as out:
        out.write(b"changed since")
    with served(made) as base:
        browser = signed_in(base)
        url = "/s/alice/odd/restore/" + url_of(name) + "?at=" + commit
        done = browser.submit(url, {"target": "live"})
        assert done.status == 302, done.text[:2000]
        check_headers(done)
        assert urlsplit(done.location).path == "/s/alice/odd/blob/" + url_of(name)
    with open(live + b"/" + name, "rb") as back:
        assert back.read() == b"as it was"


def test_no_raw_control_character_reaches_the_log(odd: Odd) -> None:
    browser = signed_in(odd.base)
    for name in ODD_NAMES[:5]:
        for view in ("raw", "preview", "blob"):
            browser.get("/s/alice/odd/" + view + "/" + url_of(name))
        # A name the snapshot does not have, with the same characters: a 404's path too.
        browser.get("/s/alice/odd/raw/" + url_of(b"missing " + name))
    # gunicorn's workers write as they go; the log is read after the answers came back.
    data = odd.log.read_bytes()
    assert not re.search(rb"[\x00-\x08\x0b-\x1f\x7f]", data), data[-3000:]
    for name in ODD_NAMES[:5]:
        assert name not in data


def test_a_date_before_the_first_snapshot_says_so(odd: Odd) -> None:
    browser = signed_in(odd.base)
    for at in ("1900-01-01", "19000101", "1969-12-31", "1970-01-01", "2025-03-03"):
        page = browser.get("/s/alice/odd/tree/?at=" + at)
        assert page.status == 404, (at, page.status)
        assert "The first snapshot is from 2025-03-04" in page.text, page.text[:3000]
        # Never another snapshot's files instead.
        assert "tab\tname.txt" not in page.text
    same_day = browser.get("/s/alice/odd/tree/?at=2025-03-04")
    assert same_day.status == 200 and "tab\tname.txt" in same_day.text
