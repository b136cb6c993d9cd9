"""End to end, as a person does it: a real laptop, the real cloud, a real browser.

- the cloud: `bluegrass-cloud run` on loopback; alice is added with `user add --json` (her
  laptop's enrollment code) and given a web password with `user password --admin`; her
  segment `docs` already has a history, with snapshots dated 8 and 2 days ago and today;
- the laptop: the real `bluegrass` command with a HOME of its own (tests.laptop.conftest),
  enrolled with that code, syncing ~/Documents as `docs`;
- the browser: Debian's Chromium driven by Playwright (as in tests/panel/test_browser.py).

alice signs in, browses to her letter as of five days ago, restores that version into her
synced folder, and her laptop's next sync brings exactly those bytes back, while the version
it replaced stays in the history.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.cloud.server import enrolled
from tests.cloud.web import cli, commit, configured, set_password, started, write
from tests.conftest import require_tool
from tests.laptop.conftest import Laptop

playwright_sync = pytest.importorskip("playwright.sync_api")

PASSWORD = "alice's web password"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--no-first-run"]
# Bytes a careless copy would change: CRLF line ends, UTF-8, a control character, no final
# newline.
LAST_WEEK = "Dear Grandma,\r\nthe version from last week — café\x07\r\nLove".encode()
TWO_DAYS_AGO = b"Dear Grandma,\r\nthe version from two days ago\r\n"
TODAY = b"Dear Grandma,\r\ntoday's version, which turns out to be wrong\r\n"


@pytest.fixture
def chromium() -> Iterator[object]:
    executable = require_tool("chromium")
    with playwright_sync.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_restore_last_weeks_version_in_the_browser_and_the_laptop_gets_it(
    chromium, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    cloud = cli(data)
    cloud("init")
    server = configured(data, tmp_path)  # the ports first: the enrollment code carries them
    device = cloud("user", "add", "alice", "--json").stdout
    assert enrolled(device).code.sftp_port == server.sftp_port
    set_password(cloud, "alice", PASSWORD, "--admin")
    docs = data / "files" / "alice" / "docs"
    letter = docs / "letters" / "to-grandma.txt"
    write(docs / "notes.md", "# notes\n", days_ago=8)
    for i in range(6):
        write(docs / "old" / f"{i}.txt", f"old {i}\n", days_ago=8)
    for content, days in ((LAST_WEEK, 8), (TWO_DAYS_AGO, 2), (TODAY, 0)):
        write(letter, content, days_ago=days)
        commit(cloud, "alice", "docs", days)
    started(server, ["alice/docs"])
    try:
        laptop = Laptop(tmp_path / "laptop")
        documents = laptop.folder("Documents")
        laptop.run("enroll", json.loads(device)["enrollment_code"])
        laptop.run("segment", "add", "docs", str(documents))
        laptop.run("sync")
        on_laptop = documents / "letters" / "to-grandma.txt"
        assert on_laptop.read_bytes() == TODAY
        # A change since the last daily commit (the check file and the laptop's metadata are
        # not one: they never enter the history): the restore keeps it in a snapshot first.
        (documents / "shopping.txt").write_text("flour, eggs\n")
        laptop.run("sync")

        context = chromium.new_context(
            viewport={"width": 1280, "height": 860},
            base_url=f"http://127.0.0.1:{server.http_port}",
        )
        page = context.new_page()
        expect = playwright_sync.expect
        page.goto("/")
        page.get_by_label("Name").fill("alice")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
        page.get_by_role("link", name="alice/docs").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("docs")
        five_days_ago = (datetime.now() - timedelta(days=5)).strftime("%Y-%m-%d")
        page.get_by_label("As of").fill(five_days_ago)
        page.get_by_role("button", name="Show").click()
        page.get_by_role("link", name="letters/").click()
        page.get_by_role("link", name="to-grandma.txt").click()
        expect(page.get_by_text("the version from last week")).to_be_visible()
        page.get_by_role("link", name="Restore…").click()
        page.get_by_label("Into your synced folder", exact=False).check()
        page.get_by_role("button", name="Restore").click()
        status = page.get_by_role("status")
        expect(status).to_contain_text("Restored letters/to-grandma.txt as of")
        expect(status).to_contain_text("kept in a new snapshot")
        # Back on the file's page, which shows the newest snapshot: the restored version.
        expect(page.get_by_text("the version from last week")).to_be_visible()
        context.close()
        assert letter.read_bytes() == LAST_WEEK

        # The laptop's next sync brings it home. The sync endpoint may show the old listing
        # for up to 5 s (its directory cache), so sync again until it arrives, with a deadline.
        deadline = time.monotonic() + 60
        syncs = 0
        while on_laptop.read_bytes() != LAST_WEEK:
            assert time.monotonic() < deadline, f"not on the laptop after {syncs} syncs"
            laptop.run("sync", "docs")
            syncs += 1
        assert laptop.segment_status("docs")["last_run"]["outcome"] == "ok"
        # With its own time, as it was then (sftp carries whole seconds).
        assert abs(on_laptop.stat().st_mtime - letter.stat().st_mtime) < 1
        assert letter.stat().st_mtime < time.time() - 7 * 86400
        assert (documents / "notes.md").read_bytes() == b"# notes\n"  # nothing else moved
        # Today's version is in the history: the snapshot taken just before the restore.
        after, before = json.loads(cloud("log", "alice", "docs", "--json").stdout)["snapshots"][:2]
        assert "before a restore" in before["summary"]
        assert "after restoring" in after["summary"]
        kept = tmp_path / "kept"
        where = ["letters/to-grandma.txt", "--at", before["commit"], "--to", str(kept)]
        cloud("restore", "alice", "docs", *where)
        assert (kept / "to-grandma.txt").read_bytes() == TODAY
    finally:
        server.stop()
