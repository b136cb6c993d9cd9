"""Notifications and pings (bluegrass.core.notify) against real receivers on loopback: an SMTP
server (aiosmtpd) for mailto://, an HTTP server for json://, ntfy:// and pings. Messages are
delivered by the real delivery child; tests wait for them by polling the receivers.

Where days must pass (the repeat limit), the Notifier's clock is moved on: said in the test.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from bluegrass.core.notify import Notifier, NotifySettings, Target
from bluegrass.core.notify.deliver import RETRY_DELAYS
from bluegrass.core.notify.store import Folder

from tests.support.net import free_port
from tests.support.receivers import HttpReceiver, SmtpReceiver, wait_for
from tests.support.receivers import http as http  # fixtures, used by name
from tests.support.receivers import smtp as smtp

DAY = 86400.0


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def notifier(root: Path, *urls: str, clock: Clock | None = None, **kw: object) -> Notifier:
    settings = NotifySettings(targets=tuple(Target(u, frozenset()) for u in urls), **kw)  # type: ignore[arg-type]
    return Notifier(root, settings, role="cloud", clock=clock or time.time)


def drained(n: Notifier) -> bool:
    return not n.folder.read()["outbox"]


def messages(receiver: HttpReceiver) -> list[dict]:
    return [json.loads(r.body) for r in receiver.requests if r.method == "POST"]


def test_a_problem_is_said_once_repeated_after_the_limit_and_resolved(
    tmp_path: Path, http: HttpReceiver
) -> None:
    """The clock is moved on by a day between the updates that must repeat."""
    clock = Clock()
    n = notifier(tmp_path, f"json://127.0.0.1:{http.port}/hook", clock=clock)

    assert n.update("commit-failed", "alice/docs", active=True, detail="disk full") == "started"
    wait_for(lambda: len(http.requests) == 1, what="the first message")
    first = messages(http)[0]
    assert "Daily snapshot failed: alice/docs" in first["title"]
    assert first["message"] == "disk full"

    clock.now += 3600  # an hour on: still failing, nothing new
    assert n.update("commit-failed", "alice/docs", active=True, detail="disk full") is None
    clock.now += DAY  # a day on: said again, once
    assert n.update("commit-failed", "alice/docs", active=True, detail="disk full") == "repeated"
    assert n.update("commit-failed", "alice/docs", active=True, detail="disk full") is None
    wait_for(lambda: len(http.requests) == 2, what="the repeat")
    assert messages(http)[1]["title"].endswith("(still)")

    assert n.update("commit-failed", "alice/docs", active=False, detail="committed") == "resolved"
    wait_for(lambda: len(http.requests) == 3, what="the resolution")
    assert messages(http)[2]["title"].startswith("Resolved: ")
    assert n.update("commit-failed", "alice/docs", active=False) is None  # said once
    wait_for(lambda: drained(n))
    n.wait(10)
    assert len(http.requests) == 3


def test_mail_and_ntfy_receive_the_same_event(
    tmp_path: Path, http: HttpReceiver, smtp: SmtpReceiver
) -> None:
    n = notifier(
        tmp_path,
        f"mailto://127.0.0.1:{smtp.port}?from=bluegrass@example.org&to=me@example.org",
        f"ntfy://127.0.0.1:{http.port}/backups-topic",
    )
    n.update("replica-failed", "replica", active=True, detail="bucket gone")
    wait_for(lambda: len(smtp.messages) == 1 and len(http.requests) == 1, what="both")
    mail = smtp.messages[0]
    assert "Replica upload failing: replica" in mail["Subject"]
    assert mail["To"] == "me@example.org"
    texts = [
        part.get_payload(decode=True).decode()
        for part in mail.walk()
        if part.get_content_maintype() == "text"
    ]
    assert any("bucket gone" in text for text in texts), texts
    ntfy = json.loads(http.requests[0].body)
    assert ntfy["topic"] == "backups-topic" and ntfy["message"] == "bucket gone"
    n.wait(10)


def test_a_target_gets_only_its_events(tmp_path: Path, http: HttpReceiver) -> None:
    settings = NotifySettings(
        targets=(Target(f"json://127.0.0.1:{http.port}/only", frozenset({"replica-failed"})),)
    )
    n = Notifier(tmp_path, settings, role="cloud")
    assert n.update("commit-failed", "alice/docs", active=True) is None
    assert n.update("replica-failed", "replica", active=True) == "started"
    wait_for(lambda: len(http.requests) == 1)
    assert "Replica" in messages(http)[0]["title"]
    n.wait(10)
    assert len(http.requests) == 1


def test_a_problem_shorter_than_after_is_never_said(tmp_path: Path, http: HttpReceiver) -> None:
    """The clock is moved on by 7 hours for the one that lasts."""
    clock = Clock()
    n = notifier(tmp_path, f"json://127.0.0.1:{http.port}/hook", clock=clock)
    six_hours = 6 * 3600.0
    assert n.update("sync-failing", "docs", active=True, after=six_hours) is None
    clock.now += 3600
    assert n.update("sync-failing", "docs", active=False, after=six_hours) is None  # a blip

    assert n.update("sync-failing", "docs", active=True, after=six_hours) is None
    clock.now += 7 * 3600
    assert n.update("sync-failing", "docs", active=True, after=six_hours) == "started"
    wait_for(lambda: len(http.requests) == 1)
    assert messages(http)[0]["message"].startswith("Since ")
    n.wait(10)


def test_a_receiver_that_is_down_does_not_hold_the_job_and_is_retried(tmp_path: Path) -> None:
    """Nothing listens on the port at first: the job's call returns at once, the failure is
    logged with the URL's password masked, and the message goes once a receiver is there."""
    port = free_port()
    url = f"json://bob:hunter2secret@127.0.0.1:{port}/hook"
    n = notifier(tmp_path, url)
    began = time.monotonic()
    assert n.update("commit-failed", "alice/docs", active=True, detail="x") == "started"
    took = time.monotonic() - began
    assert took < 1.0, took  # measured well under 0.1 s: the network is the child's

    log = Folder(tmp_path).log
    wait_for(lambda: log.exists() and "could not send" in log.read_text(), what="the failure")
    text = log.read_text()
    assert "retrying in 5 s" in text
    assert "hunter2secret" not in text and "bob" not in text
    assert "json://…@127.0.0.1" in text

    receiver = HttpReceiver(port)
    receiver.start()
    try:
        wait_for(lambda: len(receiver.requests) == 1, timeout=RETRY_DELAYS[0] + 15, what="retry")
        wait_for(lambda: "notify: sent" in log.read_text())
        assert "hunter2secret" not in Folder(tmp_path).log.read_text()
    finally:
        n.wait(30)
        receiver.stop()


def test_a_receiver_that_never_answers_is_given_up_within_the_timeout(tmp_path: Path) -> None:
    """A socket that accepts and never replies: the job does not wait, and the delivery gives
    the attempt up after timeout_seconds."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    try:
        n = notifier(tmp_path, f"json://127.0.0.1:{port}/hook", timeout_seconds=2.0)
        began = time.monotonic()
        n.update("commit-failed", "alice/docs", active=True)
        assert time.monotonic() - began < 1.0
        log = Folder(tmp_path).log
        wait_for(lambda: log.exists() and "could not send" in log.read_text(), timeout=20)
        assert time.monotonic() - began < 12
    finally:
        listener.close()
        _stop_delivery(tmp_path)


def _stop_delivery(root: Path) -> None:
    """End the delivery child this test started (it stays for its next retry): the one
    process whose command line names this test's folder."""
    import psutil

    for proc in psutil.Process().children(recursive=False):
        try:
            command = proc.cmdline()
        except psutil.NoSuchProcess:
            continue
        if "bluegrass.core.notify.worker" in command and str(root) in command:
            proc.terminate()
            proc.wait(10)


def test_several_processes_raising_the_same_problem_send_one_message(
    tmp_path: Path, http: HttpReceiver
) -> None:
    """Four processes at once see the same failure: the lock makes one of them the first."""
    url = f"json://127.0.0.1:{http.port}/hook"
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from bluegrass.core.notify import Notifier, NotifySettings, Target\n"
        "n = Notifier(Path(sys.argv[1]), NotifySettings(targets=(Target(sys.argv[2], "
        "frozenset()),)), role='cloud')\n"
        "while time.time() < float(sys.argv[3]): pass\n"
        "print(n.update('commit-failed', 'alice/docs', active=True))\n"
        "n.wait(20)\n"
    )
    start_at = str(time.time() + 1.5)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path), url, start_at],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert sorted(outputs) == ["None", "None", "None", "started"]
    wait_for(lambda: len(http.requests) >= 1)
    assert len(http.requests) == 1


def test_pings_start_success_and_failure_with_a_bounded_log(
    tmp_path: Path, http: HttpReceiver
) -> None:
    base = f"http://127.0.0.1:{http.port}/ping/abc-123"
    n = Notifier(
        tmp_path,
        NotifySettings(pings={"commit": base}, ping_log_bytes=100),
        role="cloud",
    )
    with n.ping("commit").running():
        pass
    ping = n.ping("commit")
    ping.start()
    ping.fail(3, "x" * 500 + "the end of the log")
    with pytest.raises(RuntimeError), n.ping("commit").running():
        raise RuntimeError("boom")
    n.ping("other-job").start()  # no URL: nothing

    wait_for(lambda: len(http.requests) == 6, what="six pings")
    n.wait(10)
    paths = [r.path for r in http.requests]
    assert paths == [
        "/ping/abc-123/start",
        "/ping/abc-123",
        "/ping/abc-123/start",
        "/ping/abc-123/3",
        "/ping/abc-123/start",
        "/ping/abc-123/fail",
    ]
    failed = http.requests[3].body
    assert len(failed) == 100 and failed.endswith(b"the end of the log")
    assert http.requests[5].body == b"RuntimeError: boom"


def test_a_thread_can_call_it_too(tmp_path: Path, http: HttpReceiver) -> None:
    """The cloud's scheduler and replica threads call it off the main thread."""
    n = notifier(tmp_path, f"json://127.0.0.1:{http.port}/hook")
    results: list[str | None] = []
    t = threading.Thread(
        target=lambda: results.append(n.update("replica-failed", "r", active=True))
    )
    t.start()
    t.join(10)
    assert results == ["started"]
    wait_for(lambda: len(http.requests) == 1)
    n.wait(10)


def test_a_state_folder_it_cannot_write_is_logged_and_the_job_goes_on(tmp_path: Path) -> None:
    """notify/ is a file here (a disk full or a folder made read-only would do the same)."""
    (tmp_path / "notify").write_text("in the way\n")
    lines: list[str] = []
    settings = NotifySettings(
        targets=(Target("json://127.0.0.1:9/x", frozenset()),), pings={"commit": "http://x/y"}
    )
    n = Notifier(tmp_path, settings, role="cloud", log=lines.append)
    assert n.update("commit-failed", "alice/docs", active=True) is None
    assert n.occurred("login-lockout", "alice") is False
    with n.ping("commit").running():
        pass
    n.flush()
    assert any("could not record commit-failed alice/docs" in line for line in lines), lines
    assert any("could not queue ping commit start" in line for line in lines), lines
