"""The login checker's parts that the end-to-end tests (tests/security/test_sftp.py) cannot
pin exactly: the argon2 gate's bound, what the per-login client passes on, how failures are
grouped by source, and the auth log's escaping (decisions 120–123)."""

from __future__ import annotations

import base64
import json
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from bluegrass.cloud import authclient, authproxy


def test_the_gate_runs_a_few_queues_a_few_and_refuses_the_rest_at_once() -> None:
    gate = authproxy.Gate(slots=1, waiting=1, wait=30.0)
    release = threading.Event()
    started = threading.Event()

    def slow() -> bool:
        started.set()
        return release.wait(30)

    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(gate.run, slow)
        assert started.wait(10)
        queued = pool.submit(gate.run, lambda: True)
        # One running and one waiting: the third is refused without waiting for either.
        while gate.pending < 2:  # until the queued call has taken its place
            threading.Event().wait(0.001)
        with pytest.raises(authproxy.Busy, match="busy"):
            gate.run(lambda: True)
        release.set()
        assert running.result(10) is True and queued.result(10) is True
    assert gate.run(lambda: True) is True  # room again once they are done


def test_a_queued_check_that_cannot_start_in_time_is_refused_as_busy() -> None:
    gate = authproxy.Gate(slots=1, waiting=1, wait=0.2)
    release = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(gate.run, lambda: release.wait(30))
        with pytest.raises(authproxy.Busy, match="within"):
            gate.run(lambda: True)
        release.set()
        assert running.result(10) is True


def test_the_client_shortens_what_an_attacker_makes_long() -> None:
    raw = json.dumps({"client_ip": "10.0.0.1", "pass": "p" * 5000, "user": "a" * 70_000})
    request = authclient.request_from(raw.encode())
    assert request["user"] == "a" * authclient.MAX_USER
    assert request["user_length"] == 70_000
    assert request["pass"] == ""  # too long to be a device's password: never truncated into one
    assert request["client_ip"] == "10.0.0.1"


def test_an_unreadable_request_still_names_its_address() -> None:
    request = authclient.request_from(b'{"client_ip": "10.0.0.7", "pass": "x", "user": "al')
    assert request["client_ip"] == "10.0.0.7"
    assert str(request["unreadable"]).startswith("unreadable request")


@pytest.mark.parametrize(
    ("address", "source"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),  # the same subscriber's /64
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("not an address", "not an address"),
    ],
)
def test_failures_are_grouped_by_source(address: str, source: str) -> None:
    assert authproxy.source_of(address) == source


def test_a_log_record_is_one_escaped_line(tmp_path: Path) -> None:
    request = {"user": "x\naccepted user=alice \x1b[2J" + "y" * 500, "user_length": 700}
    entry = authclient.log_entry("refused", request, "sftp", 1.0, reason="invalid user name")
    authclient.append_log(str(tmp_path), entry)
    text = (tmp_path / authclient.LOG).read_text()
    assert text.count("\n") == 1 and "\x1b" not in text and text.isascii()
    record = json.loads(text)
    assert record["user"] == request["user"][: authclient.LOG_USER]
    assert record["user_length"] == 700 and record["outcome"] == "refused"


def test_a_second_checker_on_the_same_data_root_is_refused(tmp_path: Path) -> None:
    from bluegrass.cloud.authserver import LoginChecker
    from bluegrass.core.errors import BluegrassError

    said: list[str] = []
    first = LoginChecker(tmp_path, said.append)
    first.start()
    try:
        with pytest.raises(BluegrassError, match="another `bluegrass-cloud run`"):
            LoginChecker(tmp_path, said.append).start()
        # The first still answers, and the probe was not taken for a login.
        answer = authclient.ask(str(tmp_path), {"client_ip": "10.0.0.1", "via": "sftp"})
        assert answer["accepted"] is False and answer["reason"] == "no user name"
        records = [json.loads(line) for line in (tmp_path / authclient.LOG).open()]
        assert [r["reason"] for r in records] == ["no user name"]
    finally:
        first.stop()
    # A socket left by a checker that is gone is replaced.
    stale = tmp_path / authclient.SOCKET
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as orphan:
        orphan.bind(str(stale))
    second = LoginChecker(tmp_path, said.append)
    second.start()
    second.stop()
    assert said == []


def test_git_over_http_says_busy_not_wrong_password_without_a_checker(tmp_path: Path) -> None:
    from bluegrass.cloud.githttp import GitHTTP
    from bluegrass.cloud.webapp import DeviceLogin

    (tmp_path / "repos").mkdir()
    app = GitHTTP(tmp_path / "repos", DeviceLogin(tmp_path))
    token = base64.b64encode(b"alice:d12345678.secret").decode()
    environ = {
        "PATH_INFO": "/api/v1/segments",
        "REQUEST_METHOD": "GET",
        "REMOTE_ADDR": "10.0.0.3",
        "HTTP_AUTHORIZATION": f"Basic {token}",
    }
    answered: list[tuple[str, list[tuple[str, str]]]] = []
    body = b"".join(app(environ, lambda status, headers: answered.append((status, headers))))
    status, headers = answered[0]
    assert status == "503 Service Unavailable" and ("Retry-After", "10") in headers
    assert b"login checker is not running" in body
    record = json.loads((tmp_path / authclient.LOG).read_text())
    assert record["via"] == "http" and record["client_ip"] == "10.0.0.3"
