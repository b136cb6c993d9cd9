"""The Pi's web panel through its real HTTP port: `bluegrass-appliance run` serving it.

Everything goes over HTTP to the gunicorn that `run` starts, as a person's browser would
(tests.cloud.web.Browser: cookies and forms, no redirects followed): first-run setup with an
enrollment code, sign-in, the dashboard (drive, health, and an alert produced for real by a
history rewrite on the cloud, refused by a "Mirror now" job), browsing a file as of an older
snapshot, a restore into a new folder on the drive, CSRF, and eject. The cloud is the
appliance tests' stand-in (tests/appliance/fakecloud.py: real git http-backend); the drive is
a folder (--drive-dir), except for the eject of a real drive (a loop device, as root).
"""

from __future__ import annotations

import json
import re
import socket
import sqlite3
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
from bluegrass.appliance import drive
from bluegrass.appliance.state import MIGRATIONS, SCHEMA_VERSION, State, StateError

from tests.appliance.conftest import (
    PANEL_ON_LOOPBACK,
    USER,
    Appliance,
    CloudData,
    enrollment,
    git,
)
from tests.appliance.fakecloud import FakeCloud
from tests.cloud.web import Browser, Page

PASSWORD = "a long panel password"
QUIET = '[schedule]\nmirror_every = "1h"\n[files]\nenabled = false\n'


@contextmanager
def serving(appliance: Appliance, log: Path) -> Iterator[str]:
    """`run` with its panel on a free loopback port; yields the panel's base URL."""
    with appliance.daemon(log):
        found = appliance.wait_status(
            lambda s: (s.get("panel") or {}).get("state") == "up", "the panel to listen", log=log
        )
        yield found["panel"]["url"].rstrip("/")


def wait_job(browser: Browser, location: str, timeout: float = 60) -> dict:
    """Poll a job's JSON, as the job page's script does, until it is no longer active."""
    deadline = time.monotonic() + timeout
    seen: dict = {}
    while time.monotonic() < deadline:
        page = browser.get(location + ".json")
        assert page.status == 200, page.text
        seen = json.loads(page.body)
        if not seen["active"]:
            return seen
        time.sleep(0.2)
    raise AssertionError(f"the job did not finish: {seen}")


def flashes(page: Page) -> str:
    return " ".join(re.findall(r'<p class="flash[^"]*">([^<]*)</p>', page.text))


def test_setup_enroll_dashboard_alert_browse_restore_csrf(
    appliance: Appliance, cloud_data: CloudData, fake_cloud: FakeCloud, tmp_path: Path
) -> None:
    folder = cloud_data.files("docs")
    (folder / "a.txt").write_text("first\n")
    (folder / "letters").mkdir()
    (folder / "letters" / "grandma.txt").write_text("Dear Grandma,\n")
    first = cloud_data.commit("docs")
    (folder / "a.txt").write_text("second\n")
    second = cloud_data.commit("docs")
    drive_dir = tmp_path / "drive"
    appliance.global_args = ["--drive-dir", str(drive_dir)]
    appliance.configure(QUIET)
    log = tmp_path / "daemon.log"

    # Not enrolled yet: `run` serves the panel anyway, whose setup takes the code.
    with serving(appliance, log) as base:
        browser = Browser(base)
        assert browser.get("/").location.endswith("/setup")
        form = browser.get("/setup")
        assert form.status == 200 and 'name="enrollment_code"' in form.text
        assert form.headers["Content-Security-Policy"].startswith("default-src 'self'")

        # CSRF: a form posted without the session's token is refused before anything runs.
        forged = browser.post(
            "/setup", {"name": "admin", "password": PASSWORD, "confirm": PASSWORD}
        )
        assert forged.status == 400
        # A damaged code: no account, not enrolled.
        bad = browser.submit(
            "/setup",
            {
                "name": "admin",
                "password": PASSWORD,
                "confirm": PASSWORD,
                "enrollment_code": "bg1-damaged",
                "setup_code": appliance("setup-code").stdout.strip(),
            },
        )
        assert bad.status == 400 and "enrollment code" in bad.text.lower(), bad.text
        assert appliance.json("status")["enrolled"] is None
        code = enrollment(fake_cloud.port).encode()
        done = browser.submit(
            "/setup",
            {
                "name": "admin",
                "password": PASSWORD,
                "confirm": PASSWORD,
                "enrollment_code": code,
                "setup_code": appliance("setup-code").stdout.strip(),
            },
        )
        assert done.status == 302 and done.location.endswith("/"), done.text
        stored = appliance.state / "enrollment.json"
        assert stat.S_IMODE(stored.stat().st_mode) == 0o600
        key = appliance.state / "panel-secret.key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(key.read_text().strip()) >= 32
        assert json.loads(stored.read_text())["code"] == code
        assert appliance.json("status")["enrolled"]["user"] == USER
        # Setup happens once.
        assert browser.get("/setup").location.endswith("/login")

        # The daemon notices the enrollment and mirrors.
        appliance.wait_status(
            lambda s: (s["last_jobs"]["mirror"] or {}).get("outcome") == "ok",
            "the first mirror after enrolling from the panel",
            log=log,
        )
        board = browser.get("/")
        assert board.status == 200, board.text
        assert f"{USER}/docs" in board.text
        assert "Backup drive" in board.text and str(drive_dir) in board.text
        for item in ("Drive", "Memory", "Load", "System disk"):
            assert f"<dt>{item}</dt>" in board.text, item
        assert "Mirror now" in board.text

        # The cloud rewrites history; "Mirror now" from the panel is refused by the mirror.
        server = str(cloud_data.repo_path("docs"))
        tree = git("--git-dir", server, "rev-parse", f"{second}^{{tree}}").stdout.strip()
        forged_head = git("--git-dir", server, "commit-tree", tree, "-m", "x").stdout.strip()
        git("--git-dir", server, "update-ref", "refs/heads/main", forged_head)
        assert browser.post("/jobs", {"kind": "mirror"}).status == 400  # no token
        started = browser.submit("/jobs", {"kind": "mirror"}, form_page="/")
        assert started.status == 302 and "/jobs/r" in started.location, started.text
        job_path = started.location.removeprefix(base)
        finished = wait_job(browser, job_path)
        assert finished["state"] == "failed", finished
        assert "rewrote history" in finished["message"], finished
        board = browser.get("/")
        problems = re.search(r'<tr class="sev-3">.*?</tr>', board.text, re.S)
        assert problems, board.text
        assert f"{USER}/docs" in problems.group(0)
        assert "rewrote history" in problems.group(0) and forged_head[:12] in problems.group(0)
        assert "Error" in problems.group(0)
        # The mirror kept its history: browsing still shows the real snapshots.
        mirror = drive_dir / "bluegrass" / USER / "docs.git"
        assert git("--git-dir", str(mirror), "rev-parse", "main").stdout.strip() == second

        # Browse a file as of the older snapshot, and now.
        old = browser.get(f"/s/{USER}/docs/blob/a.txt?at={first}")
        assert old.status == 200 and "first" in old.text, old.text
        raw = browser.get(f"/s/{USER}/docs/raw/a.txt?at={first}")
        assert raw.status == 200 and raw.body == b"first\n"
        assert browser.get(f"/s/{USER}/docs/raw/a.txt").body == b"second\n"
        listing = browser.get(f"/s/{USER}/docs/tree/letters?at={first}")
        assert "grandma.txt" in listing.text
        assert browser.get(f"/s/{USER}/nope/tree/").status == 404

        # Restore the older snapshot into a new folder on the drive.
        restore_page = f"/s/{USER}/docs/restore/?at={first}"
        form = browser.get(restore_page)
        assert (
            form.status == 200 and 'value="drive"' in form.text and 'value="live"' not in form.text
        )
        no_token = browser.post(restore_page, {"target": "drive", "folder": "docs-then"})
        assert no_token.status == 400
        assert not (drive_dir / "restored").exists()
        restored = browser.submit(
            restore_page, {"target": "drive", "folder": "docs-then"}, form_page=restore_page
        )
        assert restored.status == 302, restored.text
        target = drive_dir / "restored" / "docs-then"
        assert (target / "a.txt").read_text() == "first\n"
        assert (target / "letters" / "grandma.txt").read_text() == "Dear Grandma,\n"
        assert "Restored the whole segment" in flashes(
            browser.get(restored.location.removeprefix(base))
        )
        again = browser.submit(
            restore_page, {"target": "drive", "folder": "docs-then"}, form_page=restore_page
        )
        assert again.status == 400 and "exists" in again.text
        # A folder name that would leave restored/ is refused by the panel and the backend.
        sneaky = browser.submit(
            restore_page, {"target": "drive", "folder": "../escape"}, form_page=restore_page
        )
        assert sneaky.status == 400 and not (drive_dir / "escape").exists()

        # A folder stands in for the drive: nothing to eject, and the panel says so.
        assert browser.post("/drive/eject", {}).status == 400
        ejected = browser.submit("/drive/eject", {}, form_page="/")
        assert ejected.status == 302
        assert "nothing to eject" in flashes(browser.get("/"))

        # Another browser: wrong password refused, the right one signs in.
        other = Browser(base)
        assert other.login("admin", "not the password").status == 401
        assert other.get("/").status == 302
        assert other.login("admin", PASSWORD).status == 302
        assert other.get("/").status == 200
        # Changing the password from one session ends the other.
        changed = other.submit(
            "/account",
            {"current": PASSWORD, "password": PASSWORD + "!", "confirm": PASSWORD + "!"},
            form_page="/account",
        )
        assert changed.status == 302
        assert browser.get("/").status == 302


@pytest.mark.root
@pytest.mark.slow
def test_eject_from_the_panel_unmounts_a_real_drive(
    appliance: Appliance,
    cloud_data: CloudData,
    fake_cloud: FakeCloud,
    make_loop,
    udevd: str,
    tmp_path: Path,
) -> None:
    loop = make_loop(32)
    device = loop.attach()
    appliance("drive", "prepare", device, "--yes")
    (cloud_data.files("docs") / "a.txt").write_text("a\n")
    cloud_data.commit("docs")
    appliance.enroll(enrollment(fake_cloud.port))
    mountpoint = tmp_path / "mnt"
    appliance.configure(f'[drive]\nmountpoint = "{mountpoint}"\n' + QUIET)
    appliance("password", "admin", "--password-stdin", input=PASSWORD + "\n")
    log = tmp_path / "daemon.log"
    with serving(appliance, log) as base:
        appliance.wait_status(
            lambda s: (s["last_jobs"]["mirror"] or {}).get("outcome") == "ok",
            "the first mirror",
            log=log,
        )
        browser = Browser(base)
        assert browser.login("admin", PASSWORD).status == 302
        board = browser.get("/")
        assert "Eject the drive" in board.text and device in board.text
        ejected = browser.submit("/drive/eject", {}, form_page="/")
        assert ejected.status == 302
        assert "you can unplug it now" in flashes(browser.get("/"))
        assert drive.mount_at(mountpoint) is None
        assert appliance.json("status")["drive"]["state"] == "ejected"
        board = browser.get("/")
        assert "safe to unplug" in board.text and "Eject the drive" not in board.text
        # Nothing to browse while it is out, and jobs say why they cannot run.
        assert browser.get(f"/s/{USER}/docs/tree/").status == 404
        started = browser.submit("/jobs", {"kind": "mirror"}, form_page="/")
        finished = wait_job(browser, started.location.removeprefix(base))
        assert finished["state"] == "failed" and "ejected" in finished["message"], finished


def test_the_panel_is_restarted_when_it_dies_and_one_daemon_per_state(
    appliance: Appliance, tmp_path: Path
) -> None:
    appliance.global_args = ["--drive-dir", str(tmp_path / "drive")]
    appliance.configure(QUIET)
    appliance("password", "admin", "--password-stdin", input=PASSWORD + "\n")
    log = tmp_path / "daemon.log"
    with serving(appliance, log) as base:
        browser = Browser(base)
        assert browser.login("admin", PASSWORD).status == 302
        first = psutil.Process(appliance.json("status")["daemon"]["pid"])
        [master] = [p for p in first.children() if "gunicorn" in " ".join(p.cmdline())]
        master.kill()  # gunicorn dies outright (its workers follow it)

        def back(status: dict) -> bool:
            panel = status.get("panel") or {}
            return (
                panel.get("state") == "up"
                and panel.get("pid") not in (None, master.pid)
                and panel.get("url") == base + "/"
            )

        appliance.wait_status(back, "the panel to be started again on its port", log=log)
        # The session key is kept in the state: a session outlives the restart.
        assert browser.get("/").status == 200
        assert "gunicorn exited" in log.read_text() and "serving again" in log.read_text()

        # A second `run` on the same state folder is refused: it would fight over the drive.
        second = appliance("run", *PANEL_ON_LOOPBACK, check=False, timeout=60)
        assert second.returncode == 2 and "already uses" in second.stderr, second.stderr


def test_a_panel_port_in_use_fails_run_at_once(appliance: Appliance, tmp_path: Path) -> None:
    appliance.global_args = ["--drive-dir", str(tmp_path / "drive")]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        proc = appliance("run", "--panel-bind", "127.0.0.1", "--panel-port", port, check=False)
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("bluegrass-appliance: error: the panel did not start on"), last
    # Without the panel there is nothing to do before enrolling: refused, as before.
    alone = appliance("run", "--no-panel", check=False)
    assert alone.returncode == 2 and "not enrolled" in alone.stderr


def test_state_database_migrates_from_before_versioning(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    old = sqlite3.connect(path)
    for statement in MIGRATIONS[0]:
        old.execute(statement)
    old.execute(
        "INSERT INTO segments (user, segment, kind, at, ok, head, message) "
        "VALUES ('alice', 'docs', 'mirror', 1000.0, 1, 'abc', 'up to date')"
    )
    old.commit()
    old.close()

    state = State(path)

    with state.connect() as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    [row] = state.segment_results()
    assert row["last_ok_ts"] == 1000.0 and row["message"] == "up to date"
    assert not state.has_web_admin()
    request = state.request("mirror", "admin")
    assert state.request("mirror", "admin") == request  # an open request is not repeated
    State(path)  # opening again changes nothing
    newer = sqlite3.connect(path)
    newer.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    newer.close()
    with pytest.raises(StateError, match="newer Bluegrass"):
        State(path)
