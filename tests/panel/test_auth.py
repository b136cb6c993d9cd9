"""Access: first-run setup, sessions, CSRF on every form, login throttling, logout."""

from __future__ import annotations

import sqlite3

import pytest
from bluegrass.core.enrollment import Enrollment
from bluegrass.panel.reference import PLACEHOLDER_HOST_KEY, ReferenceBackend
from flask import Flask

from tests.panel.conftest import PASSWORD, World, csrf_of, login, make_app


def test_first_visit_runs_setup_and_there_is_no_default_password(world: World) -> None:
    app = make_app(world, setup=False)
    client = app.test_client()
    for url in ("/", "/login", "/s/alice/docs/tree/"):
        resp = client.get(url)
        assert resp.status_code == 302 and resp.headers["Location"].endswith("/setup"), url
    # Nothing signs in before setup, whatever the password.
    token = csrf_of(client, "/setup")
    for guess in ("admin", "password", "bluegrass", ""):
        assert ReferenceBackend(world.root).check_password("admin", guess) is None
    resp = client.post(
        "/setup",
        data={"name": "admin", "password": PASSWORD, "confirm": PASSWORD, "csrf_token": token},
    )
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/")
    assert client.get("/").status_code == 200
    with sqlite3.connect(world.root / "panel.db") as db:
        (digest,) = db.execute("SELECT hash FROM web_accounts WHERE name = 'admin'").fetchone()
    assert digest.startswith("$argon2id$") and PASSWORD not in digest
    # Setup happens once: afterwards it sends people to sign in, and a replayed POST fails.
    fresh = app.test_client()
    assert fresh.get("/setup").headers["Location"].endswith("/login")
    token = csrf_of(fresh, "/login")
    again = fresh.post(
        "/setup",
        data={"name": "evil", "password": "x" * 12, "confirm": "x" * 12, "csrf_token": token},
    )
    assert again.status_code == 302 and again.headers["Location"].endswith("/login")
    assert ReferenceBackend(world.root).account("evil") is None


def test_setup_refuses_weak_or_mismatched_passwords(world: World) -> None:
    client = make_app(world, setup=False).test_client()
    token = csrf_of(client, "/setup")
    for password, confirm in (("short", "short"), (PASSWORD, PASSWORD + "x")):
        resp = client.post(
            "/setup",
            data={"name": "admin", "password": password, "confirm": confirm, "csrf_token": token},
        )
        assert resp.status_code == 400
    assert ReferenceBackend(world.root).needs_setup()


def test_pi_setup_hands_the_enrollment_code_to_the_backend(world: World) -> None:
    client = make_app(world, "pi", setup=False).test_client()
    page = client.get("/setup").get_data(as_text=True)
    assert 'name="enrollment_code"' in page
    token = csrf_of(client, "/setup")
    form = {"name": "admin", "password": PASSWORD, "confirm": PASSWORD, "csrf_token": token}
    bad = client.post("/setup", data={**form, "enrollment_code": "bg1-garbage"})
    assert bad.status_code == 400 and "damaged" in bad.get_data(as_text=True)
    code = Enrollment(
        "cloud.example", 2022, 8080, "alice", "d0123abcd", "s" * 32, PLACEHOLDER_HOST_KEY
    ).encode()
    good = client.post("/setup", data={**form, "enrollment_code": code})
    assert good.status_code == 302
    with sqlite3.connect(world.root / "panel.db") as db:
        stored = db.execute("SELECT value FROM meta WHERE key = 'enrollment_code'").fetchone()
    assert stored == (code,)


def test_cloud_setup_has_no_enrollment_field(world: World) -> None:
    page = make_app(world, setup=False).test_client().get("/setup").get_data(as_text=True)
    assert "enrollment_code" not in page


SETUP_CODE = "7KQ2M-9XRTD-4HWBC-0PZEN"


def test_setup_takes_the_setup_code_once_where_the_backend_requires_one(world: World) -> None:
    (world.root / "setup-code").write_text(SETUP_CODE + "\n")  # what the server's operator sees
    client = make_app(world, setup=False).test_client()
    page = client.get("/setup").get_data(as_text=True)
    assert 'name="setup_code"' in page and "bluegrass-cloud web setup-code" in page
    token = csrf_of(client, "/setup")
    form = {"name": "admin", "password": PASSWORD, "confirm": PASSWORD, "csrf_token": token}
    for code in (None, "", "7KQ2M-9XRTD-4HWBC-0PZEM", SETUP_CODE + "X"):
        data = form if code is None else {**form, "setup_code": code}
        refused = client.post("/setup", data=data)
        assert refused.status_code == 401, code
        assert "Wrong setup code" in refused.get_data(as_text=True)
        assert ReferenceBackend(world.root).needs_setup()
    done = client.post("/setup", data={**form, "setup_code": SETUP_CODE})
    assert done.status_code == 302 and done.headers["Location"].endswith("/")
    assert not (world.root / "setup-code").exists()
    # The code worked once: setup is over for everyone, the code opens nothing.
    other = make_app(world, setup=False).test_client()
    assert other.get("/setup").headers["Location"].endswith("/login")
    assert not ReferenceBackend(world.root).check_setup_code(SETUP_CODE)


def test_wrong_setup_codes_lock_setup_like_failed_sign_ins(world: World) -> None:
    (world.root / "setup-code").write_text(SETUP_CODE + "\n")
    client = make_app(world, setup=False).test_client()
    token = csrf_of(client, "/setup")

    def attempt(name: str, code: str, ip: str = "10.0.0.1") -> tuple[int, str]:
        resp = client.post(
            "/setup",
            data={
                "name": name,
                "password": PASSWORD,
                "confirm": PASSWORD,
                "setup_code": code,
                "csrf_token": token,
            },
            environ_base={"REMOTE_ADDR": ip},
        )
        return resp.status_code, resp.get_data(as_text=True)

    for i in range(5):
        assert attempt("eve", f"GUESS-{i:05d}")[0] == 401
    # Locked: even the right code is refused, from that address or for that name.
    status, page = attempt("eve", SETUP_CODE)
    assert status == 429 and "locked" in page
    assert attempt("admin", SETUP_CODE)[0] == 429
    assert attempt("eve", SETUP_CODE, ip="10.9.9.9")[0] == 429
    assert ReferenceBackend(world.root).needs_setup()
    # Another name from another address is not locked out by the guesser.
    assert attempt("admin", SETUP_CODE, ip="10.9.9.9")[0] == 302
    assert ReferenceBackend(world.root).account("eve") is None


def test_pi_setup_asks_for_no_setup_code(world: World) -> None:
    client = make_app(world, "pi", setup=False).test_client()
    assert 'name="setup_code"' not in client.get("/setup").get_data(as_text=True)
    token = csrf_of(client, "/setup")
    form = {"name": "admin", "password": PASSWORD, "confirm": PASSWORD, "csrf_token": token}
    assert client.post("/setup", data=form).status_code == 302


def test_session_cookie_is_httponly_lax_and_secure_over_https(world: World) -> None:
    app = make_app(world)
    client = app.test_client()
    login(client, "alice")
    cookie = client.get_cookie("bluegrass_session")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Lax"
    assert not cookie.secure  # plain HTTP on a LAN: a Secure cookie would never come back
    https = app.test_client()
    resp = https.get("/login", base_url="https://panel.example")
    set_cookie = resp.headers["Set-Cookie"]
    assert "Secure" in set_cookie and "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie
    assert resp.headers["Strict-Transport-Security"].startswith("max-age=")


def test_every_form_post_without_a_valid_csrf_token_is_400(world: World) -> None:
    app = make_app(world)
    client = app.test_client()
    login(client, "alice")
    posts = sorted(
        rule.rule for rule in app.url_map.iter_rules() if "POST" in (rule.methods or set())
    )
    assert len(posts) >= 9, posts
    values = {
        "user": "alice",
        "segment": "docs",
        "subpath": "notes.md",
        "name": "bob",
        "device": "d00000000",
        "job_id": "x",
    }
    for rule in posts:
        url = rule
        for key, value in values.items():
            url = url.replace(f"<{key}>", value).replace(f"<path:{key}>", value)
        for data in ({}, {"csrf_token": "forged"}):
            resp = client.post(url, data={**data, "target": "live", "kind": "verify"})
            assert resp.status_code == 400, (url, data, resp.status_code)
    # The same forms with the token are accepted (so the 400s were about the token).
    token = csrf_of(client, "/")
    ok = client.post("/jobs", data={"kind": "verify", "csrf_token": token})
    assert ok.status_code == 302


def test_login_is_rate_limited_per_account_and_per_address(world: World) -> None:
    app = make_app(world)
    client = app.test_client()
    token = csrf_of(client, "/login")

    def attempt(name: str, password: str, ip: str = "10.0.0.1") -> tuple[int, str]:
        resp = client.post(
            "/login",
            data={"name": name, "password": password, "csrf_token": token},
            environ_base={"REMOTE_ADDR": ip},
        )
        return resp.status_code, resp.get_data(as_text=True)

    for _ in range(5):
        assert attempt("alice", "wrong password")[0] == 401
    status, page = attempt("alice", PASSWORD)
    assert status == 429 and "locked" in page and "minute" in page
    # Per account: from another address too.
    assert attempt("alice", PASSWORD, ip="10.9.9.9")[0] == 429
    # Per address: another account from the guessing address is locked as well...
    assert attempt("bob", PASSWORD)[0] == 429
    # ...but not from elsewhere.
    assert attempt("bob", PASSWORD, ip="10.9.9.9")[0] == 302
    token = csrf_of(client, "/login")  # signing in started a new session with a new token
    # The lock lifts when the failures are older than the window (10 minutes).
    with sqlite3.connect(world.root / "panel.db") as db:
        db.execute("UPDATE web_login_failures SET at = at - 601")
    assert attempt("alice", PASSWORD)[0] == 302


def test_wrong_password_and_unknown_name_look_the_same(world: World) -> None:
    client = make_app(world).test_client()
    token = csrf_of(client, "/login")
    pages = []
    for name in ("alice", "nobody"):
        resp = client.post("/login", data={"name": name, "password": "nope", "csrf_token": token})
        pages.append((resp.status_code, "Wrong name or password." in resp.get_data(as_text=True)))
    assert pages == [(401, True), (401, True)]


def test_logout_ends_the_session(alice) -> None:
    assert alice.get("/").status_code == 200
    token = csrf_of(alice, "/")
    assert alice.post("/logout", data={"csrf_token": token}).status_code == 302
    resp = alice.get("/")
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]


def test_a_password_reset_signs_out_existing_sessions(cloud_app: Flask, client_for) -> None:
    bob = client_for("bob")
    admin = client_for("alice")
    assert bob.get("/").status_code == 200
    token = csrf_of(admin, "/admin/users")
    new = "a brand new password"
    resp = admin.post(
        "/admin/users/bob/password", data={"password": new, "confirm": new, "csrf_token": token}
    )
    assert resp.status_code == 302
    assert bob.get("/").status_code == 302  # the old session is gone
    login(cloud_app.test_client(), "bob", new)


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil"])
def test_login_never_redirects_off_site(world: World, target: str) -> None:
    client = make_app(world).test_client()
    token = csrf_of(client, "/login")
    resp = client.post(
        "/login?next=" + target,
        data={"name": "alice", "password": PASSWORD, "csrf_token": token},
    )
    assert resp.status_code == 302 and resp.headers["Location"] == "/"
