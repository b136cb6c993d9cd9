"""The dashboard renders what the backend reports, worst first; jobs; the Pi's drive; admin."""

from __future__ import annotations

import json
import re
import time

from bluegrass.core.enrollment import decode

from tests.panel.conftest import World, csrf_of, login, make_app


def test_dashboard_orders_segments_worst_first_and_shows_suspicious_snapshots(world: World) -> None:
    status = world.root / "status" / "alice"
    status.mkdir(parents=True)
    (status / "docs.json").write_text(
        json.dumps(
            {
                "last_sync": "2026-01-02T03:04:05+00:00",
                "next_job": "commit, tonight 03:00",
                "problems": [["error", "The Pi refused a history rewrite from the cloud."]],
            }
        )
    )
    (world.root / "status" / "system.json").write_text(
        json.dumps({"problems": [["warning", "The cloud is unreachable since 09:00."]]})
    )
    client = make_app(world, "pi").test_client()
    (world.root / "drive").mkdir()
    login(client, "alice")
    page = client.get("/").get_data(as_text=True)
    rows = re.findall(r'<th scope="row"><a href="[^"]+">([^<]+)</a>', page)
    assert rows == ["alice/docs", "bob/photos"]  # an error outranks a warning
    assert "refused a history rewrite" in page and "commit, tonight 03:00" in page
    assert "Suspicious snapshot" in page and "cloud is unreachable" in page
    assert "Backup drive" in page and "Eject the drive" in page
    for item in ("Disk", "Load", "Memory"):
        assert f"<dt>{item}</dt>" in page
    # Without the error, bob's suspicious snapshot comes first.
    (status / "docs.json").unlink()
    page = client.get("/").get_data(as_text=True)
    rows = re.findall(r'<th scope="row"><a href="[^"]+">([^<]+)</a>', page)
    assert rows == ["bob/photos", "alice/docs"]


def test_missing_drive_is_an_error_on_the_pi(world: World) -> None:
    client = make_app(world, "pi").test_client()
    login(client, "alice")
    page = client.get("/").get_data(as_text=True)
    assert "The backup drive is missing." in page
    assert "Eject the drive" not in page


def test_cloud_dashboard_shows_only_the_users_segments(client_for) -> None:
    page = client_for("bob").get("/").get_data(as_text=True)
    assert "bob/photos" in page and "alice/docs" not in page
    assert "Backup drive" not in page


def test_run_a_job_now_and_follow_its_progress(alice, world: World) -> None:
    (world.live["alice/docs"] / "new.txt").write_text("new\n")
    token = csrf_of(alice, "/")
    resp = alice.post(
        "/jobs", data={"csrf_token": token, "kind": "commit", "user": "alice", "segment": "docs"}
    )
    assert resp.status_code == 302
    job_url = resp.headers["Location"]
    page = alice.get(job_url).get_data(as_text=True)
    assert 'id="job-progress"' in page and "data-job-url=" in page
    deadline = time.monotonic() + 30
    while True:  # the job runs in a thread: poll its JSON like the page's script does
        job = alice.get(job_url + ".json").get_json()
        if not job["active"] or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert job["state"] == "done" and job["progress"] == 1.0 and job["message"] == "committed"
    tree = alice.get("/s/alice/docs/tree/").get_data(as_text=True)
    assert ">new.txt<" in tree
    assert alice.get("/jobs/doesnotexist").status_code == 404
    assert alice.post("/jobs", data={"csrf_token": token, "kind": "rm-rf"}).status_code == 302


def test_admin_manages_users_devices_and_enrollment_codes(alice, client_for) -> None:
    token = csrf_of(alice, "/admin/users")
    pw = "carols password"
    resp = alice.post(
        "/admin/users", data={"csrf_token": token, "name": "carol", "password": pw, "confirm": pw}
    )
    assert resp.status_code == 302
    page = alice.post(
        "/admin/users/carol/enroll", data={"csrf_token": token, "device_name": "carol laptop"}
    ).get_data(as_text=True)
    code = re.search(r"(bg1-[A-Za-z0-9_-]+)</textarea>", page).group(1)
    enrolled = decode(code)
    assert enrolled.user == "carol"
    users = alice.get("/admin/users").get_data(as_text=True)
    assert enrolled.device in users and "carol laptop" in users
    assert code not in users  # shown once only
    resp = alice.post(
        f"/admin/users/carol/devices/{enrolled.device}/revoke", data={"csrf_token": token}
    )
    assert resp.status_code == 302
    assert "revoked" in alice.get("/admin/users").get_data(as_text=True)
    again = alice.post(
        f"/admin/users/carol/devices/{enrolled.device}/revoke", data={"csrf_token": token}
    )
    assert again.status_code == 404
    bob = client_for("bob")
    bob_token = csrf_of(bob, "/")
    for url in ("/admin/users", "/admin/users/carol/enroll", "/admin/users/carol/password"):
        assert bob.post(url, data={"csrf_token": bob_token}).status_code == 403, url


def test_a_backend_without_recovery_kits_offers_no_kit_page(alice) -> None:
    # The reference backend, like the Pi's, makes no kits: no link, no page, no notice.
    board = alice.get("/").get_data(as_text=True)
    assert "Recovery kit" not in board and 'href="/kit"' not in board
    assert alice.get("/kit").status_code == 404
    assert alice.post("/kit", data={"password": "x"}).status_code in (400, 404)
