"""The web interface's "Recovery kit" page, through the real HTTP port of `bluegrass-cloud run`.

A real `run` with a replica on `rclone serve s3` (replicated once, so every user's secrets
exist as they do on a server in use); the kit's text is read back with `pdftotext`, and its
secrets are compared with the server's own secrets files, never with what the test wrote.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cloud.server import Server
from tests.cloud.web import (
    Browser,
    Page,
    Run,
    cli,
    commit,
    configured,
    set_password,
    started,
    write,
)
from tests.conftest import ROOT, require_tool
from tests.support.net import free_port
from tests.support.s3 import ACCESS_KEY, SECRET_KEY, S3Server

PASSWORD = "alice's long password"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--no-first-run"]
BOB_PASSWORD = "bob's own long password"


@dataclass
class Site:
    data: Path
    cloud: Run
    server: Server
    s3: S3Server
    replica: str  # the [replica] table of its configuration

    def browser(self) -> Browser:
        return Browser(f"http://127.0.0.1:{self.server.http_port}")

    def signed_in(self, name: str, password: str) -> Browser:
        browser = self.browser()
        assert browser.login(name, password).status == 302
        return browser

    def secrets(self, user: str) -> dict[str, str]:
        text = (self.data / "replica" / "keys" / f"{user}.json").read_text()
        return dict(json.loads(text))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("kit-page")
    s3 = S3Server(tmp / "s3", free_port())
    s3.start()
    data = tmp / "data"
    cloud = cli(data)
    cloud("init")
    for user, password, *extra in (("alice", PASSWORD, "--admin"), ("bob", BOB_PASSWORD)):
        cloud("user", "add", user)
        set_password(cloud, user, password, *extra)
        write(data / "files" / user / "docs" / "letter.txt", f"{user}'s letter\n", 2)
        commit(cloud, user, "docs", 2)
    # The key the kits print to read the bucket (a read-only one on a real bucket; the test
    # server knows one key, so it is the same here).
    replica = s3.config_text(kit_access_key_id=ACCESS_KEY, kit_secret_access_key=SECRET_KEY)
    server = None
    try:
        server = configured(data, tmp, replica)
        cloud("replicate")  # every user's secrets now exist, as on a server in use
        started(server, ["alice/docs", "bob/docs"])
        yield Site(data, cloud, server, s3, replica)
    finally:
        if server is not None:
            server.stop()
        s3.stop()


def pdf_text(page: Page, tmp: Path) -> str:
    pdftotext = require_tool("pdftotext")
    pdf = tmp / "kit.pdf"
    pdf.write_bytes(page.body)
    out = subprocess.run([pdftotext, "-layout", str(pdf), "-"], capture_output=True, check=True)
    return out.stdout.decode("utf-8")


def kit_form(browser: Browser, password: str) -> Page:
    return browser.submit("/kit", {"password": password})


def test_the_kit_is_given_only_after_the_password_and_holds_only_ones_own_secrets(
    site: Site, tmp_path: Path
) -> None:
    alice = site.signed_in("alice", PASSWORD)
    board = alice.get("/")
    assert "no printed recovery kit yet" in board.text and 'href="/kit"' in board.text
    page = alice.get("/kit")
    assert page.status == 200 and "You have not made a recovery kit yet" in page.text

    # A signed-in session is not enough: the password again, and a wrong one gives nothing.
    wrong = kit_form(alice, "not the password")
    assert wrong.status == 401 and wrong.headers.get_content_type() == "text/html"
    assert "The password is wrong" in wrong.text
    assert alice.post("/kit", {"password": PASSWORD}).status == 400  # no CSRF token
    assert "You have not made a recovery kit yet" in alice.get("/kit").text

    kit = kit_form(alice, PASSWORD)
    assert kit.status == 200, kit.text[:500]
    assert kit.headers.get_content_type() == "application/pdf"
    disposition = kit.headers["Content-Disposition"]
    assert disposition == 'attachment; filename="bluegrass-recovery-kit-alice.pdf"'
    assert kit.headers["Cache-Control"] == "no-store"
    text = pdf_text(kit, tmp_path)
    mine, bobs = site.secrets("alice"), site.secrets("bob")
    for key in ("prefix", "password", "password2"):
        assert mine[key] in text, key
        assert bobs[key] not in text, key
    assert PASSWORD not in text  # no web password on paper

    assert "no printed recovery kit" not in alice.get("/").text
    assert "is up to date" in alice.get("/kit").text
    # Bob's page is about bob's kit: alice's printing does not count for him.
    bob = site.signed_in("bob", BOB_PASSWORD)
    assert "You have not made a recovery kit yet" in bob.get("/kit").text


def test_a_person_downloads_their_kit_in_a_real_browser(site: Site, tmp_path: Path) -> None:
    """Chromium (Playwright): the dashboard's notice leads to the page, the password gives
    the PDF as a download. The page's picture goes to $BLUEGRASS_SCREENSHOTS when set."""
    playwright_sync = pytest.importorskip("playwright.sync_api")
    executable = require_tool("chromium")
    shots = os.environ.get("BLUEGRASS_SCREENSHOTS")
    with playwright_sync.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        context = chromium.new_context(
            viewport={"width": 1280, "height": 860},
            base_url=f"http://127.0.0.1:{site.server.http_port}",
            accept_downloads=True,
        )
        page = context.new_page()
        expect = playwright_sync.expect
        page.goto("/")
        page.get_by_label("Name").fill("bob")
        page.get_by_label("Password").fill(BOB_PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
        notice = page.locator("#kit-notice")
        expect(notice).to_contain_text("no printed recovery kit yet")
        notice.get_by_role("link", name="Make one").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Your recovery kit")
        page.get_by_label("Your password, again").fill(BOB_PASSWORD)
        if shots:
            page.screenshot(path=str(ROOT / shots / "kit-page.png"), full_page=True)
        with page.expect_download() as download_info:
            page.get_by_role("button", name="Download the recovery kit (PDF)").click()
        download = download_info.value
        assert download.suggested_filename == "bluegrass-recovery-kit-bob.pdf"
        saved = tmp_path / download.suggested_filename
        download.save_as(saved)
        page.goto("/kit")
        expect(page.locator("#kit-state")).to_contain_text("is up to date")
        context.close()
        chromium.close()
    text = subprocess.run(
        [require_tool("pdftotext"), "-layout", str(saved), "-"], capture_output=True, check=True
    ).stdout.decode("utf-8")
    assert site.secrets("bob")["password"] in text


def test_a_printed_kit_goes_out_of_date_when_a_secret_on_it_changes(site: Site) -> None:
    bob = site.signed_in("bob", BOB_PASSWORD)
    assert kit_form(bob, BOB_PASSWORD).status == 200
    assert "is up to date" in bob.get("/kit").text
    # The administrator rotates the read key the kits print: the kit on paper no longer
    # opens the bucket.
    config = site.data / "bluegrass-cloud.toml"
    before = config.read_text()
    assert site.replica in before
    rotated = site.s3.config_text(
        kit_access_key_id=ACCESS_KEY,
        kit_secret_access_key="rotatedSecretKey0123456789abcdefghijklmn",
    )
    config.write_text(before.replace(site.replica, rotated))
    try:
        assert "is out of date" in bob.get("/kit").text
        assert "recovery kit is out of date" in bob.get("/").text
    finally:
        config.write_text(before)
    assert "is up to date" in bob.get("/kit").text


def test_a_kit_made_with_the_command_counts_as_printed(site: Site, tmp_path: Path) -> None:
    site.cloud("user", "add", "dave")
    set_password(site.cloud, "dave", "dave's long password")
    dave = site.signed_in("dave", "dave's long password")
    assert "You have not made a recovery kit yet" in dave.get("/kit").text
    site.cloud("kit", "dave", "--out", str(tmp_path / "dave.pdf"))
    assert "is up to date" in dave.get("/kit").text
    assert "no printed recovery kit" not in dave.get("/").text


def test_wrong_passwords_on_the_kit_page_count_as_failed_sign_ins(site: Site) -> None:
    # Last in this module: it locks sign-in from 127.0.0.1 for the login window. Failures
    # count per name and per address, so alice's one wrong password above counts too.
    site.cloud("user", "add", "carol")
    set_password(site.cloud, "carol", "carol's long password")
    carol = site.signed_in("carol", "carol's long password")
    statuses = [kit_form(carol, f"guess {i}").status for i in range(6)]
    assert 429 in statuses and set(statuses[: statuses.index(429)]) == {401}, statuses
    assert statuses.index(429) <= 5, statuses
    locked = kit_form(carol, "carol's long password")
    assert locked.status == 429 and locked.headers.get_content_type() == "text/html"
    assert "Sign-in is locked" in locked.text
