"""Emergency access walked through in a real browser: Debian's Chromium driven by Playwright
against a real `bluegrass-cloud run` (the setup of tests.cloud.test_emergency).

alice names bob as a trusted person; bob, in his own browser, asks for access; alice's
dashboard says so at once; the wait runs out (the server's clock moved by moving the
request's stored time back, as tests.cloud.test_emergency does); bob browses and downloads
alice's letter; alice sees every step in her log and ends it; bob's open page loses access.

Screenshots of the owner's page and the grantee's view go to $BLUEGRASS_SCREENSHOTS
(docs/screenshots when regenerating the documentation's pictures), else to a temporary folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cloud.test_emergency import LETTER, PASSWORDS, Site, site  # noqa: F401 - fixture
from tests.conftest import ROOT, require_tool

playwright_sync = pytest.importorskip("playwright.sync_api")

CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--no-first-run"]
DESKTOP = {"width": 1280, "height": 860}


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    target = os.environ.get("BLUEGRASS_SCREENSHOTS")
    path = (ROOT / target) if target else tmp_path / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def chromium() -> Iterator[object]:
    executable = require_tool("chromium")
    with playwright_sync.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _sign_in(chromium, base: str, name: str):  # type: ignore[no-untyped-def]
    context = chromium.new_context(base_url=base, viewport=DESKTOP, accept_downloads=True)
    tab = context.new_page()
    tab.goto("/login")
    tab.get_by_label("Name").fill(name)
    tab.get_by_label("Password").fill(PASSWORDS[name])
    tab.get_by_role("button", name="Sign in").click()
    playwright_sync.expect(tab.get_by_role("heading", name="Dashboard")).to_be_visible()
    return tab


def test_trust_request_wait_read_and_end_in_the_browser(
    chromium,
    site: Site,  # noqa: F811
    shots: Path,
    tmp_path: Path,
) -> None:
    expect = playwright_sync.expect
    alice = _sign_in(chromium, site.base, "alice")
    alice.get_by_role("link", name="Emergency access").click()
    alice.get_by_label("Their user name on this server").fill("bob")
    expect(alice.get_by_label("Waiting period, in days (1 to 90)")).to_have_value("7")
    alice.get_by_role("button", name="Trust").click()
    expect(
        alice.get_by_text("bob is one of your trusted people, with a 7-day wait.")
    ).to_be_visible()

    bob = _sign_in(chromium, site.base, "bob")
    bob.get_by_role("link", name="Emergency access").click()
    bob.get_by_role("button", name="Request access to alice's history").click()
    expect(bob.get_by_text("Requested. alice is told now")).to_be_visible()
    assert bob.goto("/s/alice/docs/tree/").status == 404  # waiting: nothing yet

    alice.get_by_role("link", name="Dashboard").click()
    expect(alice.get_by_text("bob asked for emergency access to your history")).to_be_visible()

    site.move_clock("alice", "bob", 7 + 1 / 1440)  # the server's clock, past the 7-day wait

    bob.goto("/emergency/")
    bob.get_by_role("link", name="Browse alice's history").click()
    bob.get_by_role("link", name="alice/docs").click()
    bob.get_by_role("link", name="letters/").click()
    bob.get_by_role("link", name="grandma.txt").click()
    expect(bob.get_by_text("the letter bob may read")).to_be_visible()
    expect(bob.get_by_role("note")).to_contain_text("Read-only emergency access to alice's")
    expect(bob.get_by_role("link", name="Restore…")).to_have_count(0)
    bob.screenshot(path=str(shots / "emergency-grantee.png"), full_page=True)
    with bob.expect_download() as info:
        bob.get_by_role("link", name="Download", exact=True).click()
    saved = tmp_path / "grandma.txt"
    info.value.save_as(saved)
    assert saved.read_bytes() == LETTER.encode()

    alice.get_by_role("link", name="Emergency access").click()
    expect(alice.get_by_text("bob opened your history")).to_be_visible()
    expect(alice.locator("tr.event-granted")).to_have_count(1)
    alice.screenshot(path=str(shots / "emergency-owner.png"), full_page=True)
    alice.get_by_role("button", name="End access of bob").click()
    expect(alice.get_by_text("bob's access ended now.")).to_be_visible()

    assert bob.reload().status == 404  # bob's open page, in his open session
    assert bob.goto("/s/alice/docs/tree/").status == 404
