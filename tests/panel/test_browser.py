"""End to end in a real browser: Debian's Chromium driven by Playwright, against gunicorn.

Screenshots of the main pages go to $BLUEGRASS_SCREENSHOTS (docs/screenshots when
regenerating the documentation's pictures), else to the test's temporary folder.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.conftest import ROOT, require_tool
from tests.panel.conftest import HTML_PAGE, PASSWORD, XSS_NAME, World, add_accounts, build_world
from tests.panel.server import gunicorn
from tests.panel.test_archive import tree_of

playwright_sync = pytest.importorskip("playwright.sync_api")

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 375, "height": 740}


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = os.environ.get("BLUEGRASS_SCREENSHOTS")
    path = (ROOT / target) if target else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    executable = require_tool("chromium")
    with playwright_sync.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, World]]:
    from bluegrass.panel.reference import ReferenceBackend

    world = build_world(tmp_path_factory.mktemp("browser") / "data")
    add_accounts(ReferenceBackend(world.root))
    with gunicorn(world.root, "cloud") as base:
        yield base, world


@pytest.fixture
def page(chromium, cloud: tuple[str, World]) -> Iterator[object]:
    """A fresh browser context signed in as alice."""
    base, _ = cloud
    context = chromium.new_context(viewport=DESKTOP, accept_downloads=True, base_url=base)
    tab = context.new_page()
    tab.goto("/login")
    tab.get_by_label("Name").fill("alice")
    tab.get_by_label("Password").fill(PASSWORD)
    tab.get_by_role("button", name="Sign in").click()
    tab.wait_for_url(base + "/")
    yield tab
    context.close()


def test_first_run_setup_then_sign_out_and_in(chromium, tmp_path: Path, shots: Path) -> None:
    world = build_world(tmp_path / "data")
    (world.root / "drive").mkdir()
    with gunicorn(world.root, "pi", workers=1) as base:
        context = chromium.new_context(viewport=DESKTOP, base_url=base)
        tab = context.new_page()
        tab.goto("/")
        assert tab.url == base + "/setup"
        expect = playwright_sync.expect
        expect(tab.get_by_role("heading", level=1)).to_have_text("Set up Bluegrass")
        expect(
            tab.get_by_label(
                "Enrollment code from your cloud server "
                "(optional; only for a Pi that is not enrolled yet)"
            )
        ).to_be_visible()
        tab.screenshot(path=str(shots / "setup.png"), full_page=True)
        tab.get_by_label("Administrator's name").fill("admin")
        tab.get_by_label("Password", exact=True).fill(PASSWORD)
        tab.get_by_label("Password again").fill(PASSWORD)
        tab.get_by_role("button", name="Finish setup").click()
        tab.wait_for_url(base + "/")
        expect(tab.get_by_text("Setup is complete. You are signed in.")).to_be_visible()
        expect(tab.get_by_role("heading", name="Backup drive")).to_be_visible()
        expect(tab.get_by_role("button", name="Eject the drive")).to_be_visible()
        expect(tab.get_by_role("heading", name="Health")).to_be_visible()
        tab.screenshot(path=str(shots / "dashboard-pi.png"), full_page=True)
        tab.get_by_role("button", name="Sign out").click()
        tab.wait_for_url("**/login")
        tab.goto("/s/")
        assert "/login" in tab.url
        tab.get_by_label("Name").fill("admin")
        tab.get_by_label("Password").fill("wrong password!")
        tab.get_by_role("button", name="Sign in").click()
        expect(tab.get_by_role("alert")).to_have_text("Wrong name or password.")
        tab.get_by_label("Password").fill(PASSWORD)
        tab.get_by_role("button", name="Sign in").click()
        tab.wait_for_url(base + "/s/")  # back where the sign-in was asked for
        context.close()


def test_dashboard_shows_segments_worst_first(page, cloud, shots: Path) -> None:
    expect = playwright_sync.expect
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(page.get_by_role("link", name="alice/docs")).to_be_visible()
    page.screenshot(path=str(shots / "dashboard.png"), full_page=True)


def test_browse_to_a_file_as_of_last_week(page, cloud, shots: Path) -> None:
    _, world = cloud
    expect = playwright_sync.expect
    page.get_by_role("link", name="alice/docs").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("docs")
    last_week = (world.now - timedelta(days=7)).astimezone().strftime("%Y-%m-%d")
    page.get_by_label("As of").fill(last_week)
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_role("link", name="old-draft.txt")).to_be_visible()  # deleted since
    page.screenshot(path=str(shots / "browse.png"), full_page=True)
    page.get_by_role("link", name="letters/").click()
    page.get_by_role("link", name="to-grandma.txt").click()
    expect(page.get_by_text("version two (last week)")).to_be_visible()
    expect(page.get_by_role("navigation", name="Breadcrumb")).to_contain_text("letters")
    page.get_by_role("link", name="History").click()
    expect(page.get_by_role("link", name="Diff")).to_have_count(1)  # first, then last week
    page.screenshot(path=str(shots / "history.png"), full_page=True)
    page.get_by_role("link", name="Diff").first.click()
    expect(page.locator("pre.diff")).to_contain_text("+version two (last week)")


def test_file_view_with_highlighting(page, shots: Path) -> None:
    page.goto("/s/alice/docs/blob/code/hello.py")
    expect = playwright_sync.expect
    expect(page.locator(".hl .k").first).to_have_text("def")
    page.screenshot(path=str(shots / "file.png"), full_page=True)


def test_download_a_folder_as_zip_and_compare_bytes(page, cloud) -> None:
    _, world = cloud
    page.goto("/s/alice/docs/tree/")
    with page.expect_download() as info:
        page.get_by_role("link", name="zip", exact=True).click()
    download = info.value
    assert download.suggested_filename.startswith("docs-")
    data = Path(download.path()).read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        got = {
            i.filename.removeprefix("docs/").rstrip("/"): zf.read(i)
            for i in zf.infolist()
            if not i.is_dir()
        }
    source = tree_of(world.live["alice/docs"])
    assert got == {k: v[2] for k, v in source.items() if v[0] != "d"}


def test_restore_a_file_into_the_live_tree(page, cloud) -> None:
    _, world = cloud
    expect = playwright_sync.expect
    live = world.live["alice/docs"] / "notes.md"
    original = live.read_bytes()
    live.write_text("# Notes\n\nall gone by mistake\n")
    page.goto("/s/alice/docs/blob/notes.md")
    page.get_by_role("link", name="Restore…").click()
    page.get_by_label("Into your synced folder", exact=False).check()
    page.get_by_role("button", name="Restore").click()
    expect(page.get_by_role("status")).to_contain_text("Restored notes.md into the live folder")
    assert live.read_bytes() == original


def test_job_progress_is_polled_until_done(page, cloud) -> None:
    _, world = cloud
    expect = playwright_sync.expect
    hold = world.root / "hold-jobs"
    hold.touch()  # the reference backend's jobs wait while this file exists
    try:
        page.goto("/")
        page.get_by_role("button", name="Snapshot now: alice/docs").click()
        expect(page.locator("#job-state")).to_have_text("running")
        assert page.locator("#job").get_attribute("data-active") == "yes"
    finally:
        hold.unlink()
    # The page's script polls the job's JSON: the state changes without a reload.
    expect(page.locator("#job-state")).to_have_text("done", timeout=20_000)
    assert page.locator("#job-progress").evaluate("e => e.value") == 1


def test_a_file_named_like_markup_is_text(page) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto("/s/alice/docs/tree/")
    expect = playwright_sync.expect
    link = page.get_by_role("link", name=XSS_NAME)
    expect(link).to_be_visible()
    link.click()
    expect(page.get_by_role("heading", level=1)).to_have_text(XSS_NAME)
    assert page.locator("img[src=x]").count() == 0 and dialogs == []


def test_an_html_preview_runs_no_script(page, cloud) -> None:
    base, _ = cloud
    assert "PWNED" in HTML_PAGE  # what the file's script would do
    page.goto("/s/alice/docs/blob/page.html")
    frame = page.frame_locator("iframe.render")
    playwright_sync.expect(frame.locator("#p")).to_have_text("static text")  # it did render
    assert page.title() == "page.html · alice/docs · Bluegrass"
    assert page.evaluate("localStorage.getItem('pwned')") is None
    # Opened on its own (the "Open rendered" link): still sandboxed by its CSP.
    page.goto("/s/alice/docs/preview/page.html")
    assert page.title() == "user page"
    page.goto(base + "/")
    assert page.evaluate("localStorage.getItem('pwned')") is None


def test_works_at_phone_width_with_keyboard_basics(chromium, cloud, shots: Path) -> None:
    base, _ = cloud
    context = chromium.new_context(viewport=PHONE, base_url=base, is_mobile=True)
    tab = context.new_page()
    tab.goto("/login")
    tab.keyboard.press("Tab")
    assert tab.evaluate("document.activeElement.textContent") == "Skip to content"
    tab.keyboard.press("Enter")
    assert tab.evaluate("document.activeElement.id") == "main"
    tab.goto("/login")  # without the #main fragment, which a redirect would carry along
    tab.get_by_label("Name").fill("alice")
    tab.get_by_label("Password").fill(PASSWORD)
    tab.get_by_label("Password").press("Enter")
    tab.wait_for_url(base + "/")
    for url in (
        "/",
        "/s/alice/docs/tree/",
        "/s/alice/docs/blob/code/hello.py",
        "/s/alice/docs/history/letters/to-grandma.txt",
    ):
        tab.goto(url)
        overflow = tab.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, (url, overflow)
    tab.goto("/")
    tab.screenshot(path=str(shots / "dashboard-phone.png"), full_page=True)
    context.close()
