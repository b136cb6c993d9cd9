"""The appliance's `[notify]`: checked at load, and `bluegrass-appliance notify test` against a
real SMTP server (aiosmtpd) and a real HTTP receiver on loopback."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.appliance.conftest import USER, Appliance, CloudData, enrollment
from tests.appliance.fakecloud import FakeCloud
from tests.support.net import free_port
from tests.support.receivers import HttpReceiver, SmtpReceiver, wait_for
from tests.support.receivers import http as http  # fixtures, used by name
from tests.support.receivers import smtp as smtp


def test_notify_test_sends_to_every_url(
    appliance: Appliance, http: HttpReceiver, smtp: SmtpReceiver
) -> None:
    mail = f"mailto://127.0.0.1:{smtp.port}?from=pi@example.org&to=me@example.org"
    appliance.configure(
        f'[notify]\nurls = ["{mail}"]\n'
        f'[[notify.targets]]\nurl = "ntfy://127.0.0.1:{http.port}/pi-topic"\n'
        'events = ["drive-missing", "cloud-unreachable"]\n'
    )
    proc = appliance("notify", "test")
    assert proc.stdout.splitlines() == [
        f"mailto://127.0.0.1:{smtp.port}/…: sent",
        f"ntfy://127.0.0.1:{http.port}/…: sent",
    ]
    assert "bluegrass appliance" in smtp.messages[0]["Subject"].lower()
    assert json.loads(http.requests[0].body)["topic"] == "pi-topic"


def test_notify_test_fails_when_a_url_is_down(appliance: Appliance) -> None:
    down = free_port()
    appliance.configure(f'[notify]\nurls = ["json://127.0.0.1:{down}/x"]\n')
    proc = appliance("notify", "test", check=False)
    assert proc.returncode == 1
    assert proc.stdout.startswith(f"json://127.0.0.1:{down}/…: FAILED: ")


@pytest.mark.parametrize(
    ("table", "key", "expected"),
    [
        (
            '[[notify.targets]]\nurl = "json://127.0.0.1:9/x"\nevents = ["commit-failed"]\n',
            "notify.targets[0].events",
            "unknown event 'commit-failed' (expected some of: integrity-failed",
        ),
        ('[notify]\nurls = ["not a url"]\n', "notify.urls", "expected a list of Apprise URLs"),
        ('[notify.pings]\nfiles = "ftp://x/y"\n', "notify.pings.files", "an http(s) URL"),
    ],
)
def test_bad_notify_settings_are_refused(
    appliance: Appliance, table: str, key: str, expected: str
) -> None:
    appliance.configure(table)
    proc = appliance("notify", "test", check=False)
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert line.startswith("bluegrass-appliance: error: ")
    assert f"{appliance.state / 'bluegrass-appliance.toml'}: {key}: " in line
    assert expected in line


def test_the_daemons_mirror_job_pings_start_failure_and_success(
    appliance: Appliance, cloud_data: CloudData, tmp_path: Path, http: HttpReceiver
) -> None:
    """`run` with the cloud down, then up (the fake cloud over real git HTTP): each mirror job
    pings /start, then /1 with its outcome while the cloud is down, the URL itself once it
    mirrored."""
    (cloud_data.files("docs") / "a.txt").write_text("hello\n")
    cloud_data.commit("docs")
    port = free_port()
    code = enrollment(port)
    appliance.enroll(code)
    appliance.configure(
        '[schedule]\nretry_min = "1s"\nretry_max = "2s"\n[files]\nenabled = false\n'
        f'[notify]\nping_url = "http://127.0.0.1:{http.port}/ping/mirror"\n'
    )
    appliance.global_args = ["--drive-dir", str(tmp_path / "drive")]
    log = tmp_path / "daemon.log"
    with appliance.daemon(log) as proc:
        wait_for(lambda: "/ping/mirror/1" in [r.path for r in http.requests], what="a failure")
        failed = next(r for r in http.requests if r.path == "/ping/mirror/1")
        assert failed.body.startswith(b"cloud-unreachable: ")
        with FakeCloud(cloud_data.root / "repos", {USER: code.password}, port=port):
            wait_for(lambda: "/ping/mirror" in [r.path for r in http.requests], what="success")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    paths = [r.path for r in http.requests]
    assert paths[0] == "/ping/mirror/start"
    ends = [p for p in paths if p != "/ping/mirror/start"]
    assert ends[-1] == "/ping/mirror" and set(ends[:-1]) == {"/ping/mirror/1"}
