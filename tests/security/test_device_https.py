"""Finding 2 (issue 13): a device's password must never leave for a server not known to be the
cloud, and finding 3's device side: a refused sftp login is not reported as a wrong password.

A real `bluegrass-cloud run` on loopback (sftp endpoint, gunicorn for people, gunicorn over TLS
for devices), real laptops (`bluegrass`, rclone bisync) and a real appliance
(`bluegrass-appliance`, git). The attacker is tests.support.impostor.Impostor: a listener
where a device sends HTTP — plain, or TLS with a key of its own — that records every byte and
answers as a cloud that lets anyone in would. The codes given to devices are the cloud's own,
with only the HTTP ports pointed at the listener: the sync endpoint and its host key are real,
so the SSH side is right and only the HTTP side is impersonated.
"""

from __future__ import annotations

import base64
import dataclasses
import http.client
import json
import re
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from bluegrass.core import treestate
from bluegrass.core.enrollment import Enrollment

from tests.appliance.conftest import Appliance
from tests.cloud.server import Server, enrolled, obscure, wait_for
from tests.cloud.web import Run, cli, configured, started
from tests.laptop.conftest import Laptop
from tests.support import tls
from tests.support.impostor import Impostor
from tests.support.net import free_port

USER = "alice"
SEGMENT = "docs"


@dataclass
class Site:
    data: Path
    tmp: Path
    run: Run
    server: Server

    def new_code(self, name: str) -> Enrollment:
        """A new device of alice's: its code, exactly as the cloud made it."""
        out = self.run("device", "add", USER, "--name", name, "--json").stdout
        return enrolled(out).code

    def head(self) -> str:
        repo = self.data / "repos" / USER / f"{SEGMENT}.git"
        proc = subprocess.run(
            ["git", "--git-dir", str(repo), "rev-parse", "main"],
            capture_output=True,
            text=True,
            check=True,
        )
        return proc.stdout.strip()


def start_site(tmp: Path) -> Site:
    data = tmp / "data"
    run = cli(data)
    run("init")
    # The ports first: codes carry them. Behind a proxy on the web port (which devices never
    # use), so that the device port's refusal of forwarded addresses shows.
    server = configured(data, tmp, "\n[web]\ntrust_proxy = true\n")
    run("user", "add", USER)
    live = data / "files" / USER / SEGMENT
    live.mkdir(parents=True)
    (live / "hello.txt").write_text("hello from the cloud\n")
    run("commit")
    started(server, [f"{USER}/{SEGMENT}"])
    return Site(data, tmp, run, server)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    found = start_site(tmp_path_factory.mktemp("https"))
    try:
        yield found
    finally:
        found.server.stop()


def pointed(code: Enrollment, **fields: int | str) -> Enrollment:
    """The cloud's code with some fields changed; a field that codes made before it lack
    (device_port, tls_pin) is left out rather than added."""
    return dataclasses.replace(code, **{k: v for k, v in fields.items() if hasattr(code, k)})


def unpinned(code: Enrollment, http_port: int) -> Enrollment:
    """The code as the cloud made it before it had a device port: no port, no pin."""
    return pointed(code, http_port=http_port, device_port=0, tls_pin="")


def laptop_with(tmp: Path, name: str, code: Enrollment) -> tuple[Laptop, Path]:
    laptop = Laptop(tmp / name)
    folder = laptop.folder("Documents")
    laptop.run("enroll", code.encode())
    laptop.run("segment", "add", SEGMENT, str(folder))
    return laptop, folder


def sync(laptop: Laptop) -> dict:
    """`bluegrass sync --json`'s one segment result, whatever its outcome."""
    proc = laptop.run("sync", "--json", check=False)
    assert proc.stdout.strip(), proc.stderr
    [result] = json.loads(proc.stdout)["segments"]
    return result


def aged(*folders: Path) -> None:
    """Wait until no entry of `folders` changed within the racy window (decision 56): read
    from the files' own change times."""
    newest = max(p.lstat().st_ctime for f in folders for p in [f, *f.rglob("*")])
    wait_for(lambda: time.time() > newest + treestate.RACY_SECONDS + 0.05, 10, "the racy window")


def appliance_with(tmp: Path, name: str, code: Enrollment) -> Appliance:
    pi = Appliance(tmp / name / "state")
    pi("enroll", code.encode())
    pi.global_args = ["--drive-dir", str(tmp / name / "drive")]
    return pi


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


IMPOSTORS = ["plain-http", "tls-other-key"]


def impostor_at(kind: str, port: int, tmp: Path) -> Impostor:
    if kind == "plain-http":
        return Impostor(port, USER)
    return Impostor(port, USER, tls.make(tmp / f"other-key-{port}").server_context())


# -- the attack --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", IMPOSTORS)
def test_a_laptop_sends_no_secret_to_a_listener_where_it_sends_http(
    site: Site, kind: str, tmp_path: Path
) -> None:
    web, devices = free_port(), free_port()
    code = pointed(site.new_code(f"laptop {kind}"), http_port=web, device_port=devices)
    # Plain http where people's web UI is, and the chosen kind where the device port is.
    with Impostor(web, USER) as on_web, impostor_at(kind, devices, tmp_path) as on_devices:
        laptop, folder = laptop_with(tmp_path, "laptop", code)
        (folder / "mine.txt").write_text("from the laptop\n")
        runs = [sync(laptop), sync(laptop)]  # the second is an ordinary one: it asks the state
        leaked = {
            "web port": on_web.leaked(USER, code.password),
            "device port": on_devices.leaked(USER, code.password),
        }
        asked = on_web.requests() + on_devices.requests()
    assert leaked == {"web port": [], "device port": []}, f"{leaked}; requests {asked}"
    # The sync endpoint is the real one: syncs work, in full, since no state can be had.
    assert [r["outcome"] for r in runs] == ["ok", "ok"], runs
    assert runs[1]["bisync"] is True, runs[1]


@pytest.mark.parametrize("kind", IMPOSTORS)
def test_the_pi_sends_no_secret_to_a_listener_where_it_sends_http(
    site: Site, kind: str, tmp_path: Path
) -> None:
    web, devices = free_port(), free_port()
    code = pointed(site.new_code(f"pi {kind}"), http_port=web, device_port=devices)
    with Impostor(web, USER) as on_web, impostor_at(kind, devices, tmp_path) as on_devices:
        pi = appliance_with(tmp_path, "pi", code)
        # The impostors answer the segment list without asking for a password, and point the
        # appliance at a git repository of theirs: git is lured too, if the list got through.
        mirrored = pi.json("mirror")
        refused = pi("mirror", check=False)
        leaked = {
            "web port": on_web.leaked(USER, code.password),
            "device port": on_devices.leaked(USER, code.password),
        }
        asked = on_web.requests() + on_devices.requests()
    assert leaked == {"web port": [], "device port": []}, f"{leaked}; requests {asked}"
    assert mirrored["outcome"] != "ok", mirrored
    line = one_line_error(refused)
    if kind == "tls-other-key":
        # A wrong key is named as such, in one line.
        assert "presented a TLS key other than the one pinned at enrollment" in line, line
        assert "nothing was sent" in line, line
    assert asked == [], asked


def test_git_on_the_pi_checks_the_pin_before_any_request(site: Site, tmp_path: Path) -> None:
    from bluegrass.appliance.mirror import _config_env
    from bluegrass.appliance.source import HttpSource
    from bluegrass.core.store.git import git_env

    def ls_remote(code: Enrollment) -> subprocess.CompletedProcess[str]:
        # Exactly the configuration the mirror gives git (through the environment).
        source = HttpSource(code.device_side, code, 10.0)
        repo = tmp_path / "probe.git"
        if not repo.exists():
            subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True)
        return subprocess.run(
            ["git", "ls-remote", f"{source.base_url}/git/{USER}/{SEGMENT}.git"],
            capture_output=True,
            text=True,
            env=git_env(repo, _config_env(source.git_config())),
            timeout=60,
        )

    code = site.new_code("git probe")
    devices = free_port()
    with impostor_at("tls-other-key", devices, tmp_path) as impostor:
        wrong = ls_remote(pointed(code, device_port=devices))
    assert wrong.returncode != 0
    assert "public key does not match pinned public key" in wrong.stderr, wrong.stderr
    assert impostor.requests() == [] and impostor.leaked(USER, code.password) == []
    # The same configuration against the cloud itself: the pin matches and git is served.
    right = ls_remote(code)
    assert right.returncode == 0, right.stderr
    assert f"{site.head()}\trefs/heads/main" in right.stdout


# -- the right cloud still works -----------------------------------------------------------------


def test_the_right_cloud_serves_the_state_check_and_the_mirror_over_the_pinned_port(
    site: Site, tmp_path: Path
) -> None:
    code = site.new_code("laptop right")
    assert code.device_side is not None and code.device_port == site.server.device_port
    laptop, folder = laptop_with(tmp_path, "laptop", code)
    (folder / "right.txt").write_text("to the right cloud\n")
    assert sync(laptop)["outcome"] == "ok"
    live = site.data / "files" / USER / SEGMENT
    assert (live / "right.txt").read_text() == "to the right cloud\n"
    # A quiet sync is kept, and the next is skipped: the cloud's state came over the pinned
    # device port (without it, bisync would run every time).
    aged(folder, live)
    quiet = sync(laptop)
    assert quiet["outcome"] == "ok" and quiet["files_transferred"] == 0, quiet
    skipped = sync(laptop)
    assert skipped["bisync"] is False, (quiet, skipped)

    pi = appliance_with(tmp_path, "pi", site.new_code("pi right"))
    mirrored = pi.json("mirror")
    assert mirrored["outcome"] == "ok", mirrored
    mirror = tmp_path / "pi" / "drive" / "bluegrass" / USER / f"{SEGMENT}.git"
    head = subprocess.run(
        ["git", "--git-dir", str(mirror), "rev-parse", "main"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert head == site.head()


def test_the_code_pins_the_key_the_device_port_serves(site: Site, tmp_path: Path) -> None:
    # The served certificate, read without our code, and its pin computed by openssl.
    pem = ssl.get_server_certificate(("127.0.0.1", site.server.device_port))
    (tmp_path / "served.pem").write_text(pem)
    assert site.new_code("pin probe").tls_pin == tls.openssl_pin(tmp_path / "served.pem")
    # The cloud keeps its key: codes made later pin the same one (devices would be locked out).
    assert site.new_code("pin probe 2").tls_pin == site.new_code("pin probe 3").tls_pin


def test_the_device_port_serves_devices_only_and_believes_no_forwarded_address(
    site: Site,
) -> None:
    def ask(port: int, path: str, tls_on: bool, headers: dict[str, str]) -> int:
        if tls_on:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                "127.0.0.1", port, timeout=30, context=context
            )
        else:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("GET", path, headers=headers)
            return conn.getresponse().status
        finally:
            conn.close()

    devices, web = site.server.device_port, site.server.http_port
    # People's web interface is not on the port that is exposed directly, with its own key.
    assert ask(web, "/login", False, {}) != 404
    assert ask(devices, "/login", True, {}) == 404
    # A wrong password with a forged X-Forwarded-For: the web port's proxy is trusted (the
    # control), the device port is reached directly and logs the real address.
    log = site.data / "logs" / "auth.log"
    bad = "Basic " + base64.b64encode(f"{USER}:d000000000.{'y' * 43}".encode()).decode()
    for port, tls_on, forged in ((web, False, "203.0.113.7"), (devices, True, "203.0.113.8")):
        assert (
            ask(port, "/api/v1/segments", tls_on, {"Authorization": bad, "X-Forwarded-For": forged})
            == 401
        )
    wait_for(lambda: "203.0.113.7" in log.read_text(), 10, "the web port's refusal in the log")
    assert "203.0.113.8" not in log.read_text()


# -- codes made before the device port ---------------------------------------------------------


def test_a_code_without_a_pin_sends_nothing_and_the_pi_says_to_enroll_again(
    site: Site, tmp_path: Path
) -> None:
    web = free_port()
    laptop_code = unpinned(site.new_code("old laptop"), web)
    pi_code = unpinned(site.new_code("old pi"), web)
    with Impostor(web, USER) as on_web:
        laptop, folder = laptop_with(tmp_path, "laptop", laptop_code)
        (folder / "old.txt").write_text("an old code\n")
        runs = [sync(laptop), sync(laptop)]
        pi = appliance_with(tmp_path, "pi", pi_code)
        refused = pi("mirror", check=False)
        leaked = on_web.leaked(USER, laptop_code.password) + on_web.leaked(USER, pi_code.password)
        asked = on_web.requests()
    assert leaked == [] and asked == [], (leaked, asked)
    # The laptop syncs in full, as with an unreachable cloud; the Pi refuses, in one line.
    assert [(r["outcome"], r["bisync"]) for r in runs] == [("ok", True), ("ok", True)], runs
    line = one_line_error(refused)
    assert "no pinned HTTPS key" in line and "enroll it again with a new code" in line, line


# -- finding 3: a refused sftp login is worded by what the pinned side says ---------------------


@pytest.fixture
def own_site(tmp_path: Path) -> Iterator[Site]:
    # A cloud of its own: the failed logins below count towards the endpoint's lock-out of
    # 127.0.0.1, which must not reach the other tests' cloud.
    found = start_site(tmp_path / "own")
    try:
        yield found
    finally:
        found.server.stop()


def test_a_refused_sftp_login_is_not_called_a_wrong_password_unless_https_says_so(
    own_site: Site, tmp_path: Path
) -> None:
    code = own_site.new_code("laptop")
    laptop, folder = laptop_with(tmp_path, "laptop", code)
    (folder / "a.txt").write_text("a\n")
    assert sync(laptop)["outcome"] == "ok"

    # The endpoint refuses this login although the password is good (here: rclone is given
    # another one; on a real cloud, a lock-out or a busy server).
    conf = laptop.config_dir / "rclone.conf"
    good = conf.read_text()
    wrong = obscure(f"{code.device}.{'x' * 43}")
    conf.write_text(re.sub(r"(?m)^pass = .*$", f"pass = {wrong}", good))
    busy = sync(laptop)
    assert busy["outcome"] == "retry", busy
    assert "password is still good" in busy["message"], busy
    assert "enroll" not in busy["message"], busy


def test_a_revoked_device_is_told_to_enroll_again_and_an_unpinned_side_cannot_tell(
    own_site: Site, tmp_path: Path
) -> None:
    # A cloud of its own again: the refusals above lock 127.0.0.1 out (finding 3), and a
    # locked-out source is answered 429 on the device port, which the laptop cannot word.
    code = own_site.new_code("laptop")
    laptop, folder = laptop_with(tmp_path, "laptop", code)
    (folder / "a.txt").write_text("a\n")
    assert sync(laptop)["outcome"] == "ok"

    # Revoked: both sides refuse, and the laptop says to enroll again.
    own_site.run("device", "revoke", USER, code.device)
    own_site.server.wait_log("sync endpoint ready", count=2)  # restarted on the revocation
    revoked = sync(laptop)
    assert revoked["outcome"] == "needs-user", revoked["message"]
    assert "bluegrass enroll --force CODE" in revoked["message"], revoked
    assert "password is wrong" in revoked["message"], revoked
    # Enrolling another computer with the revoked code: refused on both sides, named as such.
    other = Laptop(tmp_path / "other")
    line = one_line_error(other.run("enroll", code.encode(), check=False))
    assert "refused the code's credentials" in line and "revoked" in line, line
    # The revoked laptop's retries are its real secret, not guesses: they never lock its
    # address out (finding 3), so a new device at the same address still gets in.
    for _ in range(3):
        assert sync(laptop)["outcome"] == "needs-user"
    fresh, fresh_folder = laptop_with(tmp_path, "fresh", own_site.new_code("fresh"))
    (fresh_folder / "b.txt").write_text("b\n")
    assert sync(fresh)["outcome"] == "ok"

    # The pinned side cannot be asked (another key answers there): it says it cannot tell.
    devices = free_port()
    settings = laptop.config_dir / "bluegrass.toml"
    settings.write_text(
        re.sub(r"(?m)^device_port = .*$", f"device_port = {devices}", settings.read_text())
    )
    with impostor_at("tls-other-key", devices, tmp_path) as impostor:
        unknown = sync(laptop)
    assert impostor.leaked(USER, code.password) == [] and impostor.requests() == []
    assert unknown["outcome"] == "retry", unknown
    assert "cannot be told" in unknown["message"], unknown
    assert "TLS key other than the one pinned" in unknown["message"], unknown
