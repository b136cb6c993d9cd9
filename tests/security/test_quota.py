"""Finding 14: no per-user storage quota.

A real `bluegrass-cloud run`, a real enrolled laptop running the real `bluegrass sync`, and a
raw sftp client (rclone's sftp backend) that skips the laptop's own checks, as a hostile or
broken device would. An administrator sets alice's quota; what she syncs beyond it is refused
on the laptop (before anything is sent) and on the cloud (the endpoint serves an over-quota
user a folder she can read, delete and rename in, but not add to); she gets back under by
deleting and syncs again; bob is untouched; the dashboard shows use against quota.

Run alone: `.venv/bin/python -m pytest tests/security/test_quota.py -x`.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cloud.server import Client, Enrolled, Server, enrolled
from tests.cloud.web import Browser, Run, cli, configured, set_password, started
from tests.conftest import require_tool
from tests.laptop.conftest import Laptop

SEGMENT = "docs"
KB = 1000
# What the cloud may hold beyond a quota after a refused sync (docs/security.md, storage quotas):
# the laptop refuses before sending, so nothing but the check file and the sidecars lands.
OVERSHOOT = 64 * KB
# As tests/panel/test_browser.py runs Debian's Chromium (importing it would skip this module
# wherever Playwright is missing).
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--no-first-run"]


def live_bytes(data: Path, user: str) -> int:
    """What the user's live folder holds, walked here independently of the cloud's code."""
    total = 0
    for folder, _dirs, files in os.walk(data / "files" / user):
        for name in files:
            total += (Path(folder) / name).lstat().st_size
    return total


def history_bytes(data: Path, user: str) -> int:
    total = 0
    for folder, _dirs, files in os.walk(data / "repos" / user):
        for name in files:
            total += (Path(folder) / name).lstat().st_size
    return total


@dataclass
class World:
    data: Path
    cloud: Run
    server: Server
    laptop: Laptop
    folder: Path
    alice: Enrolled
    bob: Enrolled
    client: Client

    def sync(self, *args: str) -> tuple[int, str]:
        proc = self.laptop.run("sync", *args, check=False, timeout=180)
        return proc.returncode, proc.stdout + proc.stderr

    def users(self) -> dict[str, dict]:
        listed = json.loads(self.cloud("user", "list", "--json").stdout)["users"]
        return {u["user"]: u for u in listed}

    def restarts(self) -> int:
        return self.server.log().count("restarting the sync endpoint")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("quota")
    data = tmp / "data"
    run = cli(data)
    run("init")
    server = configured(data, tmp)
    alice = enrolled(run("user", "add", "alice", "--json").stdout)
    bob = enrolled(run("user", "add", "bob", "--json").stdout)
    for user in ("alice", "bob"):
        (data / "files" / user / SEGMENT).mkdir()
    run("commit")  # the scheduler's first round then finds nothing to commit
    set_password(run, "alice", "alice-web-password")
    set_password(run, "bob", "bob-web-password", "--admin")
    laptop = Laptop(tmp / "laptop")
    folder = laptop.folder("Documents")
    try:
        started(server, [f"alice/{SEGMENT}", f"bob/{SEGMENT}"])
        laptop.run("enroll", alice.code.encode())
        laptop.run("segment", "add", SEGMENT, str(folder))
        client = Client(server.sftp_port, tmp, alice.code.host_key)
        yield World(data, run, server, laptop, folder, alice, bob, client)
    finally:
        server.stop()


def test_an_administrator_sets_and_lists_quotas(world: World) -> None:
    bad = world.cloud("user", "quota", "alice", "lots", check=False)
    assert bad.returncode != 0
    [line] = bad.stderr.strip().splitlines()
    assert "lots" in line and "500M" in line and "none" in line, line
    unknown = world.cloud("user", "quota", "carol", "1M", check=False)
    assert unknown.returncode != 0 and "carol" in unknown.stderr
    world.cloud("user", "quota", "alice", "1M")
    users = world.users()
    assert users["alice"]["quota"] == 1_000_000
    assert users["bob"]["quota"] is None
    assert "1.0 MB" in world.cloud("user", "list").stdout


def test_a_sync_beyond_the_quota_is_refused_and_the_laptop_says_why(world: World) -> None:
    world.cloud("user", "quota", "alice", "1M")
    for name in ("a.bin", "b.bin", "c.bin"):
        (world.folder / name).write_bytes(os.urandom(400 * KB))
    code, out = world.sync()
    assert code != 0, out
    quota_lines = [line for line in out.splitlines() if "quota" in line]
    assert quota_lines, out
    assert any("1.0 MB" in line for line in quota_lines), out
    assert not (world.data / "files" / "alice" / SEGMENT / "a.bin").exists()
    assert live_bytes(world.data, "alice") <= 1_000_000 + OVERSHOOT
    status = world.laptop.segment_status(SEGMENT)
    assert "quota" in json.dumps(status), status


def test_under_the_quota_the_same_laptop_syncs(world: World) -> None:
    (world.folder / "c.bin").unlink()
    code, out = world.sync()
    assert code == 0, out
    tree = world.data / "files" / "alice" / SEGMENT
    assert (tree / "a.bin").read_bytes() == (world.folder / "a.bin").read_bytes()
    assert (tree / "b.bin").is_file()
    assert live_bytes(world.data, "alice") <= 1_000_000


def test_over_quota_the_endpoint_refuses_new_bytes_but_allows_reading_deleting_renaming(
    world: World,
) -> None:
    before = world.restarts()
    world.cloud("user", "quota", "alice", "500K")  # alice now holds about 800 KB
    # A quota change applies at once: cached logins (rclone keeps them for minutes) go.
    world.server.wait_log("restarting the sync endpoint", count=before + 1)
    world.server.wait_log("sync endpoint ready", count=before + 2)
    tree = world.data / "files" / "alice" / SEGMENT
    held = live_bytes(world.data, "alice")

    extra = world.client.tmp / "extra.bin"
    extra.write_bytes(os.urandom(100 * KB))

    def sftp(*args: str) -> tuple[int, str]:
        proc = world.client.rclone(
            "alice", *args, password=world.alice.password, source="127.0.0.14"
        )
        return proc.returncode, proc.stdout + proc.stderr

    code, out = sftp("copyto", str(extra), f":sftp:{SEGMENT}/new.bin")
    assert code != 0, out
    assert not (tree / "new.bin").exists()
    # Replacing an existing file with a bigger one goes through a new temporary file too.
    code, out = sftp("copyto", str(extra), f":sftp:{SEGMENT}/.bluegrass-check")
    assert code != 0, out
    code, out = sftp("mkdir", f":sftp:{SEGMENT}/newfolder")
    assert not (tree / "newfolder").exists(), out
    assert live_bytes(world.data, "alice") <= held

    fetched = world.client.tmp / "fetched.bin"
    code, out = sftp("copyto", f":sftp:{SEGMENT}/a.bin", str(fetched))
    assert code == 0, out
    assert fetched.read_bytes() == (tree / "a.bin").read_bytes()
    code, out = sftp("moveto", f":sftp:{SEGMENT}/b.bin", f":sftp:{SEGMENT}/b-renamed.bin")
    assert code == 0, out
    assert (tree / "b-renamed.bin").is_file() and not (tree / "b.bin").exists()

    # bob has no quota: the same upload as bob lands.
    proc = world.client.rclone(
        "bob",
        "copyto",
        str(extra),
        f":sftp:{SEGMENT}/new.bin",
        password=world.bob.password,
        source="127.0.0.15",
    )
    assert proc.returncode == 0, proc.stderr
    assert (world.data / "files" / "bob" / SEGMENT / "new.bin").stat().st_size == 100 * KB


def test_over_quota_the_laptop_says_so_then_deletes_to_get_under_and_syncs_again(
    world: World,
) -> None:
    tree = world.data / "files" / "alice" / SEGMENT
    (world.folder / "d.bin").write_bytes(os.urandom(50 * KB))
    code, out = world.sync()
    assert code != 0, out
    assert any("quota" in line and "500.0 kB" in line for line in out.splitlines()), out
    assert not (tree / "d.bin").exists()
    # Downloads still reach the laptop: the file renamed on the cloud arrived.
    assert (world.folder / "b-renamed.bin").is_file(), out

    # Delete until under: the deletions reach the cloud although alice is over quota. (a.bin:
    # b-renamed.bin came in through a sync that failed, so bisync has no record of it yet.)
    before = world.restarts()
    (world.folder / "d.bin").unlink()
    (world.folder / "a.bin").unlink()
    # Most of the segment goes (b.bin was renamed on the cloud): the guard asks to confirm.
    code, out = world.sync(SEGMENT, "--confirm-deletes")
    assert not (tree / "a.bin").exists(), out
    assert live_bytes(world.data, "alice") < 500 * KB
    # The metadata sidecar went up before the deletions, while still over: said, and retried.
    assert code == 1, out
    assert any("quota" in line and "under it now" in line for line in out.splitlines()), out
    # Back under: the endpoint drops alice's restricted login so her next sync may add.
    world.server.wait_log("restarting the sync endpoint", count=before + 1)
    world.server.wait_log("sync endpoint ready", count=before + 2)
    (world.folder / "e.bin").write_bytes(os.urandom(20 * KB))
    code, out = world.sync()
    assert code == 0, out
    assert (tree / "e.bin").read_bytes() == (world.folder / "e.bin").read_bytes()
    assert live_bytes(world.data, "alice") + history_bytes(world.data, "alice") <= 500 * KB


def test_the_dashboard_shows_use_against_quota(world: World) -> None:
    base = f"http://127.0.0.1:{world.server.http_port}"
    browser = Browser(base)
    assert browser.login("alice", "alice-web-password").status == 302
    page = browser.get("/")
    assert page.status == 200
    used = live_bytes(world.data, "alice") + history_bytes(world.data, "alice")
    assert "500.0 KB" in page.text, page.text
    assert f"{used / 1000:.1f} KB" in page.text, page.text
    # The administrator's users page shows everyone's use against their quota.
    admin = Browser(base)
    assert admin.login("bob", "bob-web-password").status == 302
    users = admin.get("/admin/users")
    assert users.status == 200
    row = next(r for r in users.text.split("<tr") if ">alice<" in r)
    assert "500.0 KB" in row and f"{used / 1000:.1f} KB" in row, row
    # The device API tells the laptop the same numbers.
    request = urllib.request.Request(
        base + "/api/v1/quota",
        headers={"Authorization": "Basic " + _basic("alice", world.alice.password)},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    assert (answer["user"], answer["quota"], answer["used"]) == ("alice", 500_000, used)
    assert answer["over"] is False


def _basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_over_quota_the_dashboard_says_so_in_a_browser(world: World, tmp_path: Path) -> None:
    """In Chromium: alice, now over a lowered quota, sees her use, the quota and a warning
    saying what still works; bob, an administrator, sees her row marked over."""
    playwright = pytest.importorskip("playwright.sync_api")
    executable = require_tool("chromium")
    world.cloud("user", "quota", "alice", "100K")
    base = f"http://127.0.0.1:{world.server.http_port}"
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            for name, password in (("alice", "alice-web-password"), ("bob", "bob-web-password")):
                context = browser.new_context(
                    viewport={"width": 1280, "height": 860}, base_url=base
                )
                tab = context.new_page()
                tab.goto("/login")
                tab.get_by_label("Name").fill(name)
                tab.get_by_label("Password").fill(password)
                tab.get_by_role("button", name="Sign in").click()
                tab.wait_for_url(base + "/")
                expect = playwright.expect
                if name == "alice":
                    storage = tab.get_by_role("region", name="Storage")
                    expect(storage).to_contain_text("100.0 KB")
                    expect(storage).to_contain_text("over")
                    expect(storage.get_by_role("progressbar")).to_be_visible()
                    expect(tab.get_by_role("region", name="Needs attention")).to_contain_text(
                        "can no longer add files"
                    )
                else:
                    tab.goto("/admin/users")
                    row = tab.get_by_role("row").filter(has_text="alice")
                    expect(row).to_contain_text("of 100.0 KB")
                    expect(row).to_contain_text("over")
                tab.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
                context.close()
        finally:
            browser.close()


def test_over_quota_growing_files_in_place_makes_the_endpoint_read_only(world: World) -> None:
    """The union that takes no new files still lets an existing file be overwritten in place
    (sftp open with truncate). A raw client that grows one that way is found by the next
    measure: alice is then served read-only until an administrator sets her quota again."""
    tree = world.data / "files" / "alice" / SEGMENT
    before = world.restarts()
    world.cloud("user", "quota", "alice", "100K")  # over it: no new files
    world.server.wait_log("restarting the sync endpoint", count=before + 1)
    world.server.wait_log("sync endpoint ready", count=before + 2)

    def sftp(*args: str) -> tuple[int, str]:
        proc = world.client.rclone(
            "alice", *args, password=world.alice.password, source="127.0.0.16"
        )
        return proc.returncode, proc.stdout + proc.stderr

    big = world.client.tmp / "big.bin"
    big.write_bytes(os.urandom(20_000 * KB))
    code, out = sftp("copyto", "--inplace", str(big), f":sftp:{SEGMENT}/e.bin")
    assert code == 0, out  # what `:nc` cannot refuse
    assert (tree / "e.bin").stat().st_size == 20_000 * KB

    # The laptop's next question is a measure: the growth is seen, the endpoint restarts.
    code, out = world.sync()
    assert code != 0, out
    assert any("quota" in line and "no changes" in line for line in out.splitlines()), out
    assert world.users()["alice"]["used"] > 20_000 * KB
    world.server.wait_log("restarting the sync endpoint", count=before + 2)
    world.server.wait_log("sync endpoint ready", count=before + 3)

    code, out = sftp("copyto", "--inplace", str(big), f":sftp:{SEGMENT}/b-renamed.bin")
    assert code != 0, out
    assert (tree / "b-renamed.bin").stat().st_size < 20_000 * KB
    code, out = sftp("deletefile", f":sftp:{SEGMENT}/e.bin")
    assert code != 0, out
    assert (tree / "e.bin").is_file()
    fetched = world.client.tmp / "fetched-e.bin"
    code, out = sftp("copyto", f":sftp:{SEGMENT}/e.bin", str(fetched))
    assert code == 0, out
    assert fetched.read_bytes() == (tree / "e.bin").read_bytes()

    # The administrator sets the quota again: back to "no new files", deletions work.
    world.cloud("user", "quota", "alice", "100K")
    world.server.wait_log("restarting the sync endpoint", count=before + 3)
    world.server.wait_log("sync endpoint ready", count=before + 4)
    code, out = sftp("deletefile", f":sftp:{SEGMENT}/e.bin")
    assert code == 0, out
    assert not (tree / "e.bin").exists()


@pytest.mark.parametrize(
    ("size", "expected"),
    [("500M", 500_000_000), ("1.5T", 1_500_000_000_000), ("50 gb", 50_000_000_000), ("1000", 1000)],
)
def test_sizes_are_decimal(world: World, size: str, expected: int) -> None:
    shown = json.loads(world.cloud("user", "quota", "bob", size, "--json").stdout)
    assert shown["quota"] == expected == world.users()["bob"]["quota"]
    world.cloud("user", "quota", "bob", "none")


@pytest.mark.parametrize("size", ["0", "-1M", "1e9", "5P", ""])
def test_a_bad_size_is_one_line_and_changes_nothing(world: World, size: str) -> None:
    before = world.users()["bob"]["quota"]
    bad = world.cloud("user", "quota", "bob", size, check=False)
    assert bad.returncode == 2, bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert world.users()["bob"]["quota"] == before
    world.cloud("user", "quota", "bob", "none")
