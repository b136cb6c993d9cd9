"""The cloud's notifications: `[notify]` checked at load, `bluegrass-cloud notify test`, and the
first events wired for real (the daily commit failing and resolving, the replica's upload
failing and resolving), each with its job's pings. Real receivers on loopback: an SMTP server
(aiosmtpd) and an HTTP server."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from bluegrass.cloud.datadir import DataRoot
from bluegrass.cloud.replica import schedule as replica_schedule
from bluegrass.cloud.replica.schedule import ReplicaRunner
from bluegrass.cloud.scheduler import Scheduler
from bluegrass.core.notify import Notifier

from tests.cloud.conftest import Run, one_line_error
from tests.support.net import free_port
from tests.support.receivers import HttpReceiver, SmtpReceiver, wait_for
from tests.support.receivers import http as http  # fixtures, used by name
from tests.support.receivers import smtp as smtp
from tests.support.s3 import S3Server


@pytest.mark.parametrize(
    ("table", "key", "expected"),
    [
        (
            '[[notify.targets]]\nurl = "json://127.0.0.1:9/x"\nevents = ["commit-faild"]\n',
            "notify.targets[0].events",
            "unknown event 'commit-faild' (expected some of: commit-failed, replica-failed",
        ),
        (
            '[[notify.targets]]\nurl = "mailto//bob:hunter2@example.org"\n',
            "notify.targets[0].url",
            "expected an Apprise URL such as",
        ),
        (
            '[notify]\nurls = ["nosuchservice://bob:hunter2@example.org"]\n',
            "notify.urls",
            "expected a list of Apprise URLs",
        ),
        (
            '[notify]\nping_url = "ftp://hc.example.org/hunter2"\n',
            "notify.ping_url",
            "expected empty, or an http(s) URL",
        ),
        (
            '[notify.pings]\nreplicate = "hc-ping.com/hunter2"\n',
            "notify.pings.replicate",
            "expected empty, or an http(s) URL",
        ),
        (
            '[[notify.targets]]\nevents = ["sync-failing"]\nurl = "json://127.0.0.1:9/x"\n',
            "notify.targets[0].events",
            "unknown event 'sync-failing'",  # a laptop's event: the cloud never raises it
        ),
        ("[notify]\nrepeat_hours = 0\n", "notify.repeat_hours", "from 1 to 720"),
    ],
)
def test_bad_notify_settings_are_refused_naming_file_key_and_expected(
    cloud: Run, data: Path, table: str, key: str, expected: str
) -> None:
    cloud("init")
    config = data / "bluegrass-cloud.toml"
    config.write_text(table)
    line = one_line_error(cloud("notify", "test", check=False))
    assert f"{config}: {key}: " in line
    assert expected in line
    assert "hunter2" not in line  # what may be a password is never repeated


def test_notify_test_says_per_url_whether_it_went(
    cloud: Run, data: Path, http: HttpReceiver, smtp: SmtpReceiver
) -> None:
    cloud("init")
    down = free_port()
    mail = f"mailto://127.0.0.1:{smtp.port}?from=bg@example.org&to=me@example.org"
    (data / "bluegrass-cloud.toml").write_text(
        f'[notify]\nurls = ["{mail}", "json://bob:hunter2@127.0.0.1:{http.port}/hook"]\n'
        f'[[notify.targets]]\nurl = "json://127.0.0.1:{down}/hook"\nevents = ["commit-failed"]\n'
    )
    proc = cloud("notify", "test", check=False)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 3, proc.stdout
    assert lines[0] == f"mailto://127.0.0.1:{smtp.port}/…: sent"
    assert lines[1] == f"json://…@127.0.0.1:{http.port}/…: sent"
    assert lines[2].startswith(f"json://127.0.0.1:{down}/…: FAILED: ")
    assert "hunter2" not in proc.stdout + proc.stderr
    assert "test message" in smtp.messages[0]["Subject"]
    assert "test message" in json.loads(http.requests[0].body)["title"]

    (data / "bluegrass-cloud.toml").write_text(
        f'[notify]\nurls = ["json://127.0.0.1:{http.port}/hook"]\n'
    )
    assert cloud("notify", "test").stdout == f"json://127.0.0.1:{http.port}/…: sent\n"


def test_notify_test_with_nothing_configured_says_so(cloud: Run, data: Path) -> None:
    cloud("init")
    proc = cloud("notify", "test", check=False)
    assert proc.returncode == 1
    assert "no notification URLs" in proc.stdout


def titles(receiver: HttpReceiver, path: str, notifier: Notifier | None = None) -> list[str]:
    """What arrived at `path`; with `notifier`, its outbox flushed first, as `run`'s scheduler
    does each tick (a send that failed under load is retried, as in `run`)."""
    if notifier is not None:
        notifier.flush()
    return [json.loads(r.body)["title"] for r in receiver.requests if r.path == path]


def test_a_failing_daily_commit_is_said_once_and_resolved_with_its_pings(
    cloud: Run, data: Path, http: HttpReceiver
) -> None:
    """The repository's place holds a file, so the commit fails for real; the commit time is
    then moved (a new day's occurrence) once the file is gone."""
    cloud("init")
    cloud("user", "add", "alice")
    (data / "files" / "alice" / "docs").mkdir()
    (data / "files" / "alice" / "docs" / "a.txt").write_text("a\n")
    (data / "repos" / "alice").mkdir(parents=True, exist_ok=True)
    (data / "repos" / "alice" / "docs.git").write_text("not a repository\n")
    notify = (
        f'[notify]\nurls = ["json://127.0.0.1:{http.port}/hook"]\n'
        f'ping_url = "http://127.0.0.1:{http.port}/ping/commit-uuid"\n'
    )
    config = data / "bluegrass-cloud.toml"
    config.write_text(f'[schedule]\ncommit_at = "00:00"\n{notify}')
    logs: list[str] = []
    scheduler = Scheduler(DataRoot(data), stop=threading.Event(), log=logs.append)
    scheduler.tick()
    scheduler.tick()  # the same day again: nothing more is said
    n = scheduler.notifier
    assert n is not None
    wait_for(lambda: len(titles(http, "/hook", n)) == 1, what="the failure")
    assert titles(http, "/hook")[0].endswith("Daily snapshot failed: alice/docs")
    wait_for(
        lambda: [r.path for r in http.requests if "ping" in r.path][-1:] == ["/ping/commit-uuid/1"]
    )
    failed = next(r for r in http.requests if r.path == "/ping/commit-uuid/1")
    assert b"Not a directory" in failed.body

    (data / "repos" / "alice" / "docs.git").unlink()
    config.write_text(f'[schedule]\ncommit_at = "00:01"\n{notify}')
    scheduler.tick()
    wait_for(lambda: len(titles(http, "/hook", n)) == 2, what="the resolution")
    assert titles(http, "/hook")[1].startswith("Resolved: ")
    wait_for(
        lambda: [r.path for r in http.requests if "ping" in r.path][-1:] == ["/ping/commit-uuid"]
    )
    pings = [r.path for r in http.requests if "ping" in r.path]
    assert pings == [
        "/ping/commit-uuid/start",
        "/ping/commit-uuid/1",
        "/ping/commit-uuid/start",
        "/ping/commit-uuid",
    ]
    assert scheduler.notifier is not None
    assert scheduler.notifier.wait(20)
    assert len(titles(http, "/hook")) == 2


def test_a_failing_replica_upload_is_said_and_resolved(
    cloud: Run, data: Path, tmp_path: Path, http: HttpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bucket's server is down, then up (a real `rclone serve s3`). The half hour a bucket
    must stay unreachable before it is news is shortened to nothing."""
    monkeypatch.setattr(replica_schedule, "FAILING_AFTER", 0.0)
    cloud("init")
    cloud("user", "add", "alice")
    (data / "files" / "alice" / "docs").mkdir()
    (data / "files" / "alice" / "docs" / "a.txt").write_text("a\n")
    cloud("commit")
    s3 = S3Server(tmp_path / "s3", free_port())
    (data / "bluegrass-cloud.toml").write_text(
        s3.config_text()
        + f'\n[notify]\nurls = ["json://127.0.0.1:{http.port}/hook"]\n'
        + f'[notify.pings]\nreplicate = "http://127.0.0.1:{http.port}/ping/repl"\n'
    )
    logs: list[str] = []
    runner = ReplicaRunner(DataRoot(data), threading.Event(), logs.append)
    runner.once()
    n = runner._notifier
    assert n is not None
    wait_for(lambda: len(titles(http, "/hook", n)) == 1, what="the failure")
    assert titles(http, "/hook")[0].endswith("Replica upload failing: replica")
    s3.start()
    try:
        runner.once()
    finally:
        s3.stop()
    n = runner._notifier
    assert n is not None
    wait_for(lambda: len(titles(http, "/hook", n)) == 2, what="the resolution")
    assert titles(http, "/hook")[1].startswith("Resolved: ")
    wait_for(lambda: len([r for r in http.requests if "ping" in r.path]) == 4)
    assert [r.path for r in http.requests if "ping" in r.path] == [
        "/ping/repl/start",
        "/ping/repl/1",
        "/ping/repl/start",
        "/ping/repl",
    ]
    assert runner._notifier is not None and runner._notifier.wait(20)
