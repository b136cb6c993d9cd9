"""The replica on the dashboard and on /health, through the real HTTP port of `bluegrass-cloud
run`: a bucket that does not answer is a failing replica (the reason on the administrator's
dashboard, never on /health, which answers anyone); once `rclone serve s3` is up, `run`'s
replica thread uploads and both show the last complete upload and the replica's size."""

from __future__ import annotations

import json
import re
from pathlib import Path

from bluegrass.panel.backendkit import human_size

from tests.cloud.server import Server
from tests.cloud.web import Browser, cli, commit, set_password, start, write
from tests.support.net import free_port
from tests.support.s3 import S3Server

ADMIN_PASSWORD = "correct horse battery"
BOB_PASSWORD = "bob's own long password"


def health(server: Server) -> tuple[int, dict]:
    page = Browser(f"http://127.0.0.1:{server.http_port}").get("/health")
    return page.status, json.loads(page.body)


def dashboard(server: Server, name: str, password: str) -> str:
    browser = Browser(f"http://127.0.0.1:{server.http_port}")
    assert browser.login(name, password).status == 302
    page = browser.get("/")
    assert page.status == 200, page.text
    return page.text


def replica_card(page: str) -> str:
    found = re.search(r'<section aria-labelledby="replica-h".*?</section>', page, re.S)
    assert found, "no replica card on the dashboard"
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", found.group(0)))


def test_a_failing_then_working_replica_on_the_dashboard_and_health(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cloud = cli(data)
    cloud("init")
    cloud("user", "add", "alice")
    cloud("user", "add", "bob")
    set_password(cloud, "alice", ADMIN_PASSWORD, "--admin")
    set_password(cloud, "bob", BOB_PASSWORD)
    write(data / "files" / "alice" / "docs" / "a.txt", "replicated\n", 2)
    commit(cloud, "alice", "docs", 2)
    s3 = S3Server(tmp_path / "s3", free_port())  # not started yet: nothing answers there
    server = start(data, tmp_path, ["alice/docs"], extra=s3.config_text(encrypt=False))
    try:
        server.wait_log("; retrying in 10s", timeout=60)
        status, body = health(server)
        assert status == 503 and body["replica"] == "failing", body
        assert body["replica_failing_since"] and body["replica_last_complete"] is None
        # Anyone can read /health: no reason, no name, no address in it.
        text = json.dumps(body)
        assert "refused" not in text and "alice" not in text and s3.endpoint not in text

        page = dashboard(server, "alice", ADMIN_PASSWORD)
        card = replica_card(page)
        assert "not yet" in card and "the last upload failed" in card, card
        assert "connection refused" in card, card
        assert "The replica is not up to date" in page
        # An ordinary user sees nothing of it.
        assert 'id="replica-h"' not in dashboard(server, "bob", BOB_PASSWORD)

        s3.start()
        server.wait_log("manifest manifests/000001.json", timeout=90)
        status, body = health(server)
        assert status == 200 and body["replica"] == "ok", body
        assert body["replica_last_complete"] and body["replica_failing_since"] is None
        # The size is what the manifests name: every object in the (unencrypted) bucket
        # but the manifests themselves.
        stored = sum(
            len(content) for key, content in s3.raw_objects().items() if "/manifests/" not in key
        )
        assert body["replica_size"] == stored > 0

        card = replica_card(dashboard(server, "alice", ADMIN_PASSWORD))
        assert "up to date" in card and "failed" not in card, card
        assert human_size(stored) in card, card
        # Recording an outcome changes nothing the next replicate would upload again (the
        # first one takes the web sign-ins just made: sessions are in the database).
        cloud("replicate")
        again = json.loads(cloud("replicate", "--json").stdout)
        assert all(a["nothing_new"] and a["uploaded"] == 0 for a in again["areas"]), again
    finally:
        assert server.stop() == 0
        s3.stop()


def test_no_replica_configured_shows_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cloud = cli(data)
    cloud("init")
    cloud("user", "add", "alice")
    set_password(cloud, "alice", ADMIN_PASSWORD, "--admin")
    write(data / "files" / "alice" / "docs" / "a.txt", "not replicated\n", 2)
    commit(cloud, "alice", "docs", 2)
    server = start(data, tmp_path, ["alice/docs"])
    try:
        status, body = health(server)
        assert status == 200 and not any(k.startswith("replica") for k in body), body
        page = dashboard(server, "alice", ADMIN_PASSWORD)
        assert 'id="replica-h"' not in page and "replica" not in page.lower()
    finally:
        assert server.stop() == 0
