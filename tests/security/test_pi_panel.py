"""Finding 1 of issue 13: an enrolled Pi whose panel has no password yet could be taken over.

Whoever reached the Pi's `/setup` first became its administrator (every mirrored file on the
drive readable, restores into the drive) and could paste an enrollment code of their own,
re-enrolling the Pi into another account. Now setup takes the Pi's one-time setup code,
which only the owner sees (`bluegrass-appliance status`, `setup-code`, the console), wrong
codes are throttled like sign-ins, and the first-run page never re-enrolls an enrolled Pi.

Everything runs for real: `bluegrass-appliance run` serving its panel on loopback (gunicorn),
the attacker and the owner as two HTTP clients from two loopback addresses, the appliance's
command line for what the owner reads on the Pi. The cloud is the appliance tests' git
http-backend stand-in (tests/appliance/fakecloud.py).
"""

from __future__ import annotations

import functools
import http.client
import json
import re
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.appliance.conftest import (
    USER,
    Appliance,
    CloudData,
    enrollment,
)
from tests.appliance.fakecloud import FakeCloud
from tests.cloud.web import Browser, _NoRedirect

PASSWORD = "a long panel password"
QUIET = '[schedule]\nmirror_every = "1h"\n[files]\nenabled = false\n'
ATTACKER_ADDRESS = "127.0.0.2"  # another host on the "LAN": loopback answers every 127/8


class _FromAddress(urllib.request.HTTPHandler):
    def __init__(self, address: str) -> None:
        super().__init__()
        self.address = address

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        connection = functools.partial(http.client.HTTPConnection, source_address=(self.address, 0))
        return self.do_open(connection, req)  # type: ignore[arg-type]


class Stranger(Browser):
    """A browser on another machine of the network: its requests come from `address`, so the
    panel's per-address throttle sees it as someone other than the owner."""

    def __init__(self, base: str, address: str) -> None:
        super().__init__(base)
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.cookies), _NoRedirect(), _FromAddress(address)
        )


# The appliance tests' fixtures, made here: this file runs alone (tests/security/conftest.py).
@pytest.fixture
def appliance(tmp_path: Path) -> Appliance:
    return Appliance(tmp_path / "state")


@pytest.fixture
def cloud_data(tmp_path: Path) -> CloudData:
    return CloudData(tmp_path / "cloud")


@pytest.fixture
def fake_cloud(cloud_data: CloudData) -> Iterator[FakeCloud]:
    (cloud_data.root / "repos").mkdir(parents=True, exist_ok=True)
    with FakeCloud(cloud_data.root / "repos", {USER: enrollment(0).password}) as server:
        yield server


@contextmanager
def serving(appliance: Appliance, log: Path) -> Iterator[str]:
    """`run` with its panel on a free loopback port; yields the panel's base URL once the
    daemon says the panel listens (its published state is the readiness signal)."""
    with appliance.daemon(log):
        found = appliance.wait_status(
            lambda s: (s.get("panel") or {}).get("state") == "up", "the panel to listen", log=log
        )
        yield found["panel"]["url"].rstrip("/")


def setup_form(code: str, name: str, **extra: str) -> dict[str, str]:
    return {"setup_code": code, "name": name, "password": PASSWORD, "confirm": PASSWORD, **extra}


def test_an_enrolled_pi_without_a_password_cannot_be_taken_over_from_its_setup_page(
    appliance: Appliance, cloud_data: CloudData, fake_cloud: FakeCloud, tmp_path: Path
) -> None:
    (cloud_data.files("docs") / "private.txt").write_text("the owner's letter\n")
    cloud_data.commit("docs")
    appliance.global_args = ["--drive-dir", str(tmp_path / "drive")]
    appliance.configure(QUIET)
    # Enrolled the way the image's first boot does it, before anyone set a panel password.
    owners_cloud = enrollment(fake_cloud.port)
    appliance.enroll(owners_cloud)
    log = tmp_path / "daemon.log"

    with serving(appliance, log) as base:
        attacker = Stranger(base, ATTACKER_ADDRESS)
        assert attacker.get("/").location.endswith("/setup")

        # The attack: setup with no code, pasting the attacker's own enrollment code.
        theirs = enrollment(fake_cloud.port, sftp_port=4022).encode()
        taken = attacker.submit("/setup", setup_form("", "admin", enrollment_code=theirs))
        assert taken.status == 401, f"setup without the setup code answered {taken.status}"
        assert "setup code" in taken.text.lower()
        assert attacker.get("/").location.endswith("/setup"), "an account was made"
        assert appliance.json("status")["enrolled"]["user"] == USER
        stored = json.loads((appliance.state / "enrollment.json").read_text())["code"]
        assert stored == owners_cloud.encode(), "the first-run page re-enrolled the Pi"

        # Guessing is throttled like sign-ins: 5 wrong codes, then even the right one is
        # refused from that address.
        status = appliance("status").stdout
        found = re.search(r"setup code ([0-9A-Z]{5}(?:-[0-9A-Z]{5}){3})", status)
        assert found, f"`status` does not show the setup code:\n{status}"
        code = found.group(1)
        for _ in range(4):
            wrong = attacker.submit("/setup", setup_form("ZZZZZ-ZZZZZ-ZZZZZ-ZZZZZ", "admin"))
            assert wrong.status == 401, wrong.status
        locked = attacker.submit("/setup", setup_form(code, "admin"))
        assert locked.status == 429, locked.status
        assert attacker.get("/").location.endswith("/setup")

        # The owner reads the code on the Pi (status, setup-code) and sets up from another
        # address; the code cannot re-enroll the Pi either.
        printed = appliance("setup-code").stdout.strip()
        assert printed == code
        owner = Browser(base)
        again = owner.submit("/setup", setup_form(code, "owner", enrollment_code=theirs))
        assert again.status == 400 and "enrolled already" in again.text, again.text
        assert json.loads((appliance.state / "enrollment.json").read_text())["code"] == stored
        done = owner.submit("/setup", setup_form(code.lower().replace("-", " "), "owner"))
        assert done.status == 302 and done.location.endswith("/"), done.text
        assert owner.get("/").status == 200

        # The code worked once: gone from the Pi and `status`; setup is over.
        kept = [p for p in appliance.state.iterdir() if p.is_file() and p.suffix != ".sqlite"]
        assert not [p for p in kept if code.encode() in p.read_bytes()], "the code is kept"
        assert "setup code" not in appliance("status").stdout
        assert Browser(base).get("/setup").location.endswith("/login")
        late = Stranger(base, "127.0.0.3").submit(
            "/setup", setup_form(code, "late"), form_page="/login"
        )
        assert late.status == 302 and late.location.endswith("/login")
        assert appliance("setup-code", check=False).returncode == 1


def test_a_new_pi_needs_the_code_too_and_a_password_set_on_the_pi_ends_it(
    appliance: Appliance, tmp_path: Path
) -> None:
    appliance.global_args = ["--drive-dir", str(tmp_path / "drive")]
    appliance.configure(QUIET)
    log = tmp_path / "daemon.log"
    with serving(appliance, log) as base:
        stranger = Stranger(base, ATTACKER_ADDRESS)
        form = stranger.get("/setup")
        assert 'name="setup_code"' in form.text
        refused = stranger.submit("/setup", setup_form("", "admin"))
        assert refused.status == 401
        shown = appliance.json("status")["panel_setup"]
        assert shown is not None and shown["setup_code"] == appliance("setup-code").stdout.strip()

        # An administrator made on the Pi itself ends the setup window: the code is void.
        appliance("password", "owner", "--password-stdin", input=PASSWORD + "\n")
        assert appliance.json("status")["panel_setup"] is None
        late = stranger.submit(
            "/setup", setup_form(shown["setup_code"], "late"), form_page="/login"
        )
        assert late.status == 302 and late.location.endswith("/login")
        assert stranger.login("late", PASSWORD).status == 401


def test_the_console_shows_the_code_until_setup_is_done(
    appliance: Appliance, tmp_path: Path
) -> None:
    """The image's `[panel] console_issue`: the code above the console's login prompt, for
    whoever stands at the Pi; gone once setup is done."""
    appliance.global_args = ["--drive-dir", str(tmp_path / "drive")]
    issue = tmp_path / "issue.d" / "bluegrass-setup.issue"
    appliance.configure(QUIET + f'[panel]\nconsole_issue = "{issue}"\n')
    log = tmp_path / "daemon.log"
    with serving(appliance, log) as base:
        # The daemon says it runs once it has written the console's file.
        appliance.wait_status(lambda s: s["daemon"]["running"], "the daemon to run", log=log)
        code = appliance("setup-code").stdout.strip()
        shown = issue.read_text()
        assert code in shown and f"{base}/setup" in shown, shown
        done = Browser(base).submit("/setup", setup_form(code, "owner"))
        assert done.status == 302 and done.location.endswith("/"), done.text
        assert not issue.exists()
