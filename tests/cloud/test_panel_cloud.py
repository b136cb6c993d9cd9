"""The cloud's web interface through the real HTTP port of `bluegrass-cloud run`.

Everything goes over HTTP to the gunicorn that `run` starts (2 workers), with the real
accounts database, the real store and the real command line to set things up and to check.
The data root is built before `run` starts, with dated snapshots made by `commit --date`,
and every segment is committed then, so the scheduler's first round finds nothing to do and
stays out of the way (its next round is 12 hours off).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from bluegrass.core import enrollment

from tests.cloud.server import Client, Enrolled, Server, enrolled, wait_for
from tests.cloud.web import Browser, Run, cli, commit, set_password, start, write

PASSWORD = "correct horse battery"
BOB_PASSWORD = "bob's own long password"


@dataclass
class Cloud:
    data: Path
    cloud: Run
    server: Server
    devices: dict[str, Enrolled]
    commits: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.http_port}"

    def browser(self, address: str | None = None) -> Browser:
        return Browser(self.base, address=address)

    def signed_in(self, name: str, password: str) -> Browser:
        browser = self.browser()
        page = browser.login(name, password)
        assert page.status == 302, page.text
        return browser

    def live(self, user: str, segment: str = "docs") -> Path:
        return self.data / "files" / user / segment

    def log(self, user: str, segment: str = "docs") -> list[dict[str, object]]:
        return json.loads(self.cloud("log", user, segment, "--json").stdout)["snapshots"]

    def restored(self, tmp: Path, user: str, path: str, at: str) -> bytes:
        target = tmp / f"restored-{at[:12]}-{len(list(tmp.iterdir()))}"
        self.cloud("restore", user, "docs", path, "--at", at, "--to", str(target))
        return (target / Path(path).name).read_bytes()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    tmp = tmp_path_factory.mktemp("panel-cloud")
    data = tmp / "data"
    cloud = cli(data)
    cloud("init")
    devices = {u: enrolled(cloud("user", "add", u, "--json").stdout) for u in ("alice", "bob")}
    set_password(cloud, "alice", PASSWORD, "--admin")  # an administrator: still only hers
    set_password(cloud, "bob", BOB_PASSWORD)
    site = Cloud(data, cloud, None, devices)  # type: ignore[arg-type]
    docs = site.live("alice")
    write(docs / "letters" / "to-grandma.txt", "Dear Grandma,\r\nversion one\r\n", 10)
    write(docs / "notes.md", "# Notes\n", 10)
    for i in range(8):
        write(docs / "archive" / f"old-{i}.txt", f"archived {i}\n", 10)
    site.commits["first"] = commit(cloud, "alice", "docs", 10)
    write(docs / "letters" / "to-grandma.txt", "Dear Grandma,\r\nversion two\r\n", 3)
    site.commits["second"] = commit(cloud, "alice", "docs", 3)
    write(site.live("bob") / "bob.txt", "bob's secret\n", 5)
    site.commits["bob"] = commit(cloud, "bob", "docs", 5)
    write(site.live("bob", "photos") / "cat.jpg", b"\xff\xd8 not really a jpeg", 5)
    commit(cloud, "bob", "photos", 5)
    site.server = start(data, tmp, ["alice/docs", "bob/docs", "bob/photos"])
    try:
        yield site
    finally:
        site.server.stop()


def test_devices_and_people_share_the_http_port(site: Cloud) -> None:
    browser = site.browser()
    health = browser.get("/health")
    assert health.status == 200 and json.loads(health.body)["sync_endpoint"] == "up"
    # The device side answers as before: git over HTTP wants a device's credentials.
    assert browser.get("/api/v1/segments").status == 401
    assert browser.get("/git/alice/docs.git/info/refs?service=git-upload-pack").status == 401
    # Everything else is the web interface, for people.
    home = browser.get("/")
    assert home.status == 302 and home.location.endswith("/login?next=/")
    assert browser.get("/static/style.css").status == 200
    login = browser.get("/login")
    assert login.status == 200 and "Sign in" in login.text
    assert login.headers["Content-Security-Policy"].startswith("default-src 'self'")
    key = site.data / "web-session.key"
    assert key.stat().st_mode & 0o777 == 0o600


def test_each_person_sees_only_their_own_segments(site: Cloud) -> None:
    alice = site.signed_in("alice", PASSWORD)
    listing = alice.get("/s/").text
    assert "alice/docs" in listing and "bob/" not in listing
    board = alice.get("/")
    assert board.status == 200
    assert "alice/docs" in board.text and "bob" not in board.text
    assert "Snapshot now" in board.text
    assert "commit, " in board.text  # the next daily commit, from [schedule]
    tree = alice.get("/s/alice/docs/tree/letters")
    assert tree.status == 200 and "to-grandma.txt" in tree.text
    raw = alice.get(f"/s/alice/docs/raw/letters/to-grandma.txt?at={site.commits['first']}")
    assert raw.status == 200 and raw.body == b"Dear Grandma,\r\nversion one\r\n"
    assert raw.headers["Content-Disposition"].startswith("attachment")
    bob = site.signed_in("bob", BOB_PASSWORD)
    mine = bob.get("/s/").text
    assert "bob/docs" in mine and "bob/photos" in mine and "alice" not in mine
    assert "Users" not in bob.get("/").text  # not an administrator
    assert bob.get("/admin/users").status == 403


def test_another_users_segment_is_404_on_every_route_like_a_missing_one(site: Cloud) -> None:
    alice = site.signed_in("alice", PASSWORD)
    token = alice.token("/")
    bob_commit = site.commits["bob"]
    before = site.live("bob").joinpath("bob.txt").read_bytes()
    reads = [
        "tree/",
        "tree/bob.txt",
        "blob/bob.txt",
        "raw/bob.txt",
        "preview/bob.txt",
        "history/bob.txt",
        "history/",
        f"diff/bob.txt?at={bob_commit}",
        f"commit/{bob_commit}",
        "search?q=bob",
        "archive/?format=zip",
        "archive/bob.txt?format=tar.gz",
        "restore/bob.txt",
        f"restore/?at={bob_commit}",
    ]
    for view in reads:
        pages = {
            where: alice.get(f"/s/{where}/{view}")
            for where in ("bob/docs", "bob/nothing", "carol/docs")
        }
        seen = {(p.status, p.body) for p in pages.values()}
        assert len(seen) == 1, (view, {k: (p.status, p.text[:300]) for k, p in pages.items()})
        assert pages["bob/docs"].status == 404, view
        assert b"bob's secret" not in pages["bob/docs"].body
    for where in ("bob/docs", "bob/nothing"):
        restore = alice.post(f"/s/{where}/restore/bob.txt", {"csrf_token": token, "target": "live"})
        assert restore.status == 404, restore.text
        user, segment = where.split("/")
        job = alice.post(
            "/jobs", {"csrf_token": token, "kind": "commit", "user": user, "segment": segment}
        )
        assert job.status == 404, job.text
    assert site.live("bob").joinpath("bob.txt").read_bytes() == before
    assert len(site.log("bob")) == 1  # no snapshot was taken on alice's behalf


def test_every_form_needs_its_sessions_csrf_token(site: Cloud) -> None:
    stranger = site.browser()
    assert stranger.post("/login", {"name": "alice", "password": PASSWORD}).status == 400
    alice = site.signed_in("alice", PASSWORD)
    other = site.signed_in("alice", PASSWORD)  # another session of the same person
    live = site.live("alice") / "notes.md"
    before = live.read_bytes()
    url = f"/s/alice/docs/restore/notes.md?at={site.commits['first']}"
    for data in ({"target": "live"}, {"target": "live", "csrf_token": other.token("/")}):
        page = alice.post(url, data)
        assert page.status == 400 and "did not come from this page" in page.text
    assert alice.post("/jobs", {"kind": "commit", "user": "alice", "segment": "docs"}).status == 400
    added = alice.post(
        "/admin/users", {"name": "mallory", "password": "x" * 12, "confirm": "x" * 12}
    )
    assert added.status == 400
    assert alice.post("/logout", {}).status == 400
    assert live.read_bytes() == before
    assert not (site.data / "files" / "mallory").exists()
    assert alice.get("/").status == 200  # still signed in: the refused sign-out did nothing


def test_restore_into_the_live_tree_keeps_the_current_version_in_history(
    site: Cloud, tmp_path: Path
) -> None:
    alice = site.signed_in("alice", PASSWORD)
    letter = site.live("alice") / "letters" / "to-grandma.txt"
    letter.write_text("edited by mistake\n")
    (site.live("alice") / "letters" / "since.txt").write_text("written after the snapshot\n")
    first = site.commits["first"]
    page = alice.get(f"/s/alice/docs/restore/letters/to-grandma.txt?at={first}")
    assert page.status == 200 and 'value="live"' in page.text
    done = alice.submit(
        f"/s/alice/docs/restore/letters/to-grandma.txt?at={first}", {"target": "live"}
    )
    assert done.status == 302, done.text
    assert done.location.endswith("/s/alice/docs/blob/letters/to-grandma.txt")
    assert letter.read_bytes() == b"Dear Grandma,\r\nversion one\r\n"
    manifest_mtime = (datetime.now() - timedelta(days=10)).timestamp()
    assert abs(letter.stat().st_mtime - manifest_mtime) < 60
    flashed = alice.get("/s/alice/docs/blob/letters/to-grandma.txt").text
    assert "into your synced folder" in flashed and "kept in a new snapshot" in flashed
    assert "version one" in flashed  # the newest snapshot records the restored state
    # The mistaken edit is in the snapshot taken just before the restore, the restored
    # version in the one just after.
    after, before = site.log("alice")[:2]
    assert "before a restore" in str(before["summary"])
    assert "after restoring the version of" in str(after["summary"])
    mistake = site.restored(tmp_path, "alice", "letters/to-grandma.txt", str(before["commit"]))
    assert mistake == b"edited by mistake\n"

    # A folder comes back exactly as it was: what was added since goes (it is in history).
    history = site.log("alice")
    folder = alice.submit(f"/s/alice/docs/restore/letters?at={first}", {"target": "live"})
    assert folder.status == 302, folder.text
    assert sorted(p.name for p in letter.parent.iterdir()) == ["to-grandma.txt"]
    assert "1 removed" in alice.get(folder.location).text
    since = site.restored(tmp_path, "alice", "letters/since.txt", str(history[0]["commit"]))
    assert since == b"written after the snapshot\n"
    assert not list((site.data / "files" / ".bluegrass-restore").iterdir())


def test_snapshot_now_runs_in_the_background_and_is_polled(site: Cloud) -> None:
    alice = site.signed_in("alice", PASSWORD)
    (site.live("alice") / "new-today.txt").write_text("new today\n")
    started = alice.submit(
        "/jobs", {"kind": "commit", "user": "alice", "segment": "docs"}, form_page="/"
    )
    assert started.status == 302, started.text
    job_url = started.location.removeprefix(site.base)
    assert re.fullmatch(r"/jobs/[0-9a-f]{16}", job_url), job_url
    page = alice.get(job_url)
    assert page.status == 200 and 'id="job-state"' in page.text
    states: list[str] = []

    def finished() -> bool:
        status = json.loads(alice.get(job_url + ".json").body)
        states.append(status["state"])
        return not status["active"]

    wait_for(finished, 30, "the snapshot job to finish")
    status = json.loads(alice.get(job_url + ".json").body)
    assert status["state"] == "done", status
    assert status["progress"] == 1 and status["message"].startswith("Committed "), status
    assert set(states) <= {"queued", "running", "done"}
    assert site.log("alice")[0]["added"] == 1
    site.server.wait_log("commit alice/docs (web, by alice): committed")
    # The state is in the accounts database, where every worker reads it; not bob's to see.
    with sqlite3.connect(site.data / "bluegrass.db") as db:
        rows = db.execute("SELECT state, owner FROM web_jobs").fetchall()
    assert ("done", "alice") in rows
    bob = site.signed_in("bob", BOB_PASSWORD)
    assert bob.get(job_url + ".json").status == 404
    assert bob.get(job_url).status == 404


def setup_code(cloud: Run) -> str:
    """The web setup code, as the person running the server gets it: `web setup-code`."""
    shown = json.loads(cloud("web", "setup-code", "--json").stdout)
    return str(shown["setup_code"])


def fresh_cloud(tmp_path: Path) -> tuple[Path, Run, Enrolled]:
    data = tmp_path / "data"
    cloud = cli(data)
    cloud("init")
    alice = enrolled(cloud("user", "add", "alice", "--json").stdout)
    write(data / "files" / "alice" / "docs" / "a.txt", "a\n")
    cloud("commit")
    return data, cloud, alice


def test_first_run_setup_then_user_administration(tmp_path: Path) -> None:
    data, cloud, alice_device = fresh_cloud(tmp_path)
    server = start(data, tmp_path, ["alice/docs"])
    site = Cloud(data, cloud, server, {"alice": alice_device})
    try:
        # Whoever runs the server is shown the setup code: in run's log and by the CLI.
        announced = re.search(
            r"web setup pending: open (\S+) and enter the setup code (\S+)", server.log()
        )
        assert announced, server.log()
        assert announced[1] == f"{site.base}/setup"
        code = setup_code(cloud)
        assert announced[2] == code and re.fullmatch(r"([0-9A-Z]{5}-){3}[0-9A-Z]{5}", code)
        code_file = data / "run" / "web-setup-code"
        assert f"Web setup code: {code}" in cloud("web", "setup-code").stdout
        assert code_file.stat().st_mode & 0o777 == 0o600  # only the server's own user reads it

        first = site.browser()
        assert first.get("/").location.endswith("/setup")
        assert first.get("/login").location.endswith("/setup")
        form = {"name": "admin", "password": PASSWORD, "confirm": PASSWORD}
        page = first.get("/setup")
        assert 'name="setup_code"' in page.text and "bluegrass-cloud web setup-code" in page.text
        # Reaching the page first is not enough: without the code, or with another, nothing.
        assert first.submit("/setup", form).status == 401
        wrong = first.submit("/setup", {**form, "setup_code": "ABCDE-FGHJK-MNPQR-STVWX"})
        assert wrong.status == 401 and "Wrong setup code" in wrong.text
        assert first.get("/").location.endswith("/setup")
        assert not (data / "files" / "admin").exists()
        assert "admin" not in cloud("user", "list").stdout
        # Typed as a person might: lower case, spaces for dashes.
        typed = code.lower().replace("-", " ")
        setup = first.submit("/setup", {**form, "setup_code": typed})
        assert setup.status == 302 and setup.location.endswith("/"), setup.text
        assert "Setup is complete" in first.get("/").text
        users = json.loads(cloud("user", "list", "--json").stdout)["users"]
        admin = next(u for u in users if u["user"] == "admin")
        assert (admin["segments"], admin["web"]) == ([], {"admin": True})
        assert (data / "files" / "admin").is_dir()  # a user like any other
        # The code worked once: it is gone, and setup is over for everyone.
        assert not code_file.exists()
        assert "web setup is done" in cloud("web", "setup-code", check=False).stderr
        late = site.browser()
        assert late.get("/setup").location.endswith("/login")
        taken = late.post(
            "/setup",
            {
                "csrf_token": late.token(),
                "name": "eve",
                "password": PASSWORD,
                "confirm": PASSWORD,
                "setup_code": code,
            },
        )
        assert taken.status == 302 and taken.location.endswith("/login")
        assert not (data / "files" / "eve").exists()

        # Adding a user makes their folder, as `user add` does (without a device).
        added = first.submit(
            "/admin/users",
            {"name": "carol", "password": BOB_PASSWORD, "confirm": BOB_PASSWORD},
            form_page="/admin/users",
        )
        assert added.status == 302, added.text
        assert (data / "files" / "carol").is_dir()
        assert "carol" in cloud("user", "list").stdout
        carol = site.signed_in("carol", BOB_PASSWORD)
        assert carol.get("/s/").status == 200 and carol.get("/admin/users").status == 403
        duplicate = first.submit(
            "/admin/users",
            {"name": "carol", "password": BOB_PASSWORD, "confirm": BOB_PASSWORD},
            form_page="/admin/users",
        )
        assert "already exists" in first.get(duplicate.location).text

        # An enrollment code for a new device of alice's, through `device add`'s code path.
        shown = first.submit(
            "/admin/users/alice/enroll", {"device_name": "new laptop"}, form_page="/admin/users"
        )
        assert shown.status == 200
        code = re.search(r"bg1-[A-Za-z0-9_=-]+", shown.text)
        assert code, shown.text
        decoded = enrollment.decode(code.group(0))
        assert decoded.user == "alice" and decoded.sftp_port == server.sftp_port
        devices = json.loads(cloud("device", "list", "alice", "--json").stdout)["devices"]
        assert {d["device"]: d["name"] for d in devices}[decoded.device] == "new laptop"
        client = Client(server.sftp_port, tmp_path, decoded.host_key)
        listed = client.rclone("alice", "lsf", ":sftp:", password=decoded.password)
        assert listed.returncode == 0 and "docs/" in listed.stdout, listed.stderr

        # Revoking it works at once (the sync endpoint restarts and refuses it).
        revoked = first.submit(
            f"/admin/users/alice/devices/{decoded.device}/revoke", {}, form_page="/admin/users"
        )
        assert revoked.status == 302
        devices = json.loads(cloud("device", "list", "alice", "--json").stdout)["devices"]
        assert {d["device"]: d["revoked"] for d in devices}[decoded.device] is not None
        server.wait_log("credentials revoked or removed: restarting the sync endpoint")
        server.wait_log("sync endpoint ready", count=2)
        refused = client.rclone("alice", "lsf", ":sftp:", password=decoded.password)
        assert refused.returncode != 0

        # A reset password ends the user's sessions.
        reset = first.submit(
            "/admin/users/carol/password",
            {"password": "a brand new password", "confirm": "a brand new password"},
            form_page="/admin/users",
        )
        assert reset.status == 302
        assert carol.get("/s/").status == 302  # signed out
        assert site.browser().login("carol", BOB_PASSWORD).status == 401
        assert site.browser().login("carol", "a brand new password").status == 302
    finally:
        server.stop()


def test_wrong_setup_codes_are_throttled_and_the_cli_can_end_setup(tmp_path: Path) -> None:
    data, cloud, _ = fresh_cloud(tmp_path)
    # Behind a proxy that names the client: each browser below comes from its own address.
    server = start(data, tmp_path, ["alice/docs"], "\n[web]\ntrust_proxy = true\n")
    site = Cloud(data, cloud, server, {})
    try:
        code = setup_code(cloud)
        guesser = site.browser("192.0.2.66")
        form = {"name": "eve", "password": PASSWORD, "confirm": PASSWORD}
        for i in range(5):
            guess = guesser.submit("/setup", {**form, "setup_code": f"{i:05d}-AAAAA-BBBBB-CCCCC"})
            assert guess.status == 401, guess.text
        # The usual lock: now even the right code is refused from there, or for that name.
        locked = guesser.submit("/setup", {**form, "setup_code": code})
        assert locked.status == 429 and "Too many failed sign-ins" in locked.text
        elsewhere = site.browser("198.51.100.7").submit("/setup", {**form, "setup_code": code})
        assert elsewhere.status == 429
        assert not (data / "files" / "eve").exists()
        assert site.browser().get("/").location.endswith("/setup")  # still pending
        assert setup_code(cloud) == code  # guessing did not change it

        # An administrator made on the command line ends the setup window, code and all.
        set_password(cloud, "alice", PASSWORD, "--admin")
        operator = site.browser("203.0.113.5")
        assert operator.get("/setup").location.endswith("/login")
        late = operator.post(
            "/setup",
            {**form, "csrf_token": operator.token(), "name": "mallory", "setup_code": code},
        )
        assert late.status == 302 and late.location.endswith("/login")
        assert not (data / "files" / "mallory").exists()
        assert operator.login("alice", PASSWORD).status == 302
        refused = cloud("web", "setup-code", check=False)
        assert refused.returncode == 1 and refused.stdout == ""
        assert refused.stderr.startswith("bluegrass-cloud: error: web setup is done")
        assert not (data / "run" / "web-setup-code").exists()  # the stale code is deleted
    finally:
        server.stop()


def test_no_setup_code_once_an_administrator_exists(site: Cloud) -> None:
    assert "web setup pending" not in site.server.log()
    assert not (site.data / "run" / "web-setup-code").exists()
    assert site.browser().get("/setup").location.endswith("/login")


def worker_pids(server: Server) -> list[int]:
    """The web port's gunicorn workers (the device port has its own: "https: ")."""
    pattern = r"(?m)^\S+ http: .*Booting worker with pid: (\d+)"
    return [int(p) for p in re.findall(pattern, server.log())]


def test_sign_in_is_throttled_and_every_worker_knows(tmp_path: Path) -> None:
    data, cloud, alice_device = fresh_cloud(tmp_path)
    set_password(cloud, "alice", PASSWORD, "--admin")  # no first-run setup on this one
    server = start(data, tmp_path, ["alice/docs"])
    site = Cloud(data, cloud, server, {"alice": alice_device})
    try:
        for _ in range(5):
            # A new connection each time: gunicorn hands them to whichever worker accepts.
            assert site.browser().login("alice", "not the password").status == 401
        locked = site.browser().login("alice", PASSWORD)
        assert locked.status == 429 and "Too many failed sign-ins" in locked.text
        # Every worker is replaced by a new process: the count was never in their memory.
        old = worker_pids(server)
        assert len(old) == 2, server.log()
        for pid in old:
            os.kill(pid, signal.SIGTERM)
        wait_for(lambda: len(worker_pids(server)) >= 4, 30, "two new gunicorn workers")
        for _ in range(4):
            again = site.browser().login("alice", PASSWORD)
            assert again.status == 429, again.text
        assert site.browser().login("nobody-else", PASSWORD).status == 429  # the address too
        # Web sign-in failures are not the sync endpoint's: alice's laptop still syncs.
        client = Client(server.sftp_port, tmp_path, alice_device.code.host_key)
        listed = client.rclone("alice", "lsf", ":sftp:", password=alice_device.password)
        assert listed.returncode == 0 and "docs/" in listed.stdout, listed.stderr
    finally:
        server.stop()


def test_a_name_that_is_not_utf8_restores_byte_exact(site: Cloud) -> None:
    name = b"caf\xe9.txt"  # Latin-1: only reachable through the raw bytes of the URL
    path = site.live("alice") / os.fsdecode(name)
    path.write_bytes(b"latin-1 named\n")
    site.cloud("commit", "--user", "alice", "--segment", "docs")
    at = str(site.log("alice")[0]["commit"])
    path.write_bytes(b"changed\n")
    alice = site.signed_in("alice", PASSWORD)
    url = f"/s/alice/docs/restore/{quote(name)}?at={at}"
    assert alice.get(url).status == 200
    assert alice.submit(url, {"target": "live"}).status == 302
    assert path.read_bytes() == b"latin-1 named\n"
