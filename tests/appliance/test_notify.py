"""The appliance's `[notify]`: checked at load, and `bluegrass-appliance notify test` against a
real SMTP server (aiosmtpd) and a real HTTP receiver on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.appliance.conftest import Appliance
from tests.support.net import free_port
from tests.support.receivers import HttpReceiver, SmtpReceiver


@pytest.fixture
def http() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver(free_port())
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    receiver = SmtpReceiver(free_port())
    receiver.start()
    yield receiver
    receiver.stop()


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
