"""The laptop's `[notify]`: checked at load, kept when `bluegrass segment add` rewrites the
file (which then becomes private), and `bluegrass notify test` against a real HTTP receiver."""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from bluegrass.laptop import settings
from bluegrass.laptop.daemon import Daemon
from bluegrass.laptop.paths import Places
from bluegrass.laptop.runner import Interrupts

from tests.laptop.conftest import Laptop, SftpCloud, one_line_error, wait_until
from tests.support.net import free_port
from tests.support.receivers import HttpReceiver


@pytest.fixture
def http() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver(free_port())
    receiver.start()
    yield receiver
    receiver.stop()


def configure(laptop: Laptop, text: str) -> Path:
    laptop.config_dir.mkdir(parents=True, exist_ok=True)
    path = laptop.config_dir / "bluegrass.toml"
    path.write_text(text)
    return path


def test_notify_test_sends_and_says_so(laptop: Laptop, http: HttpReceiver) -> None:
    down = free_port()
    configure(
        laptop,
        f'[notify]\nurls = ["ntfy://127.0.0.1:{http.port}/laptop"]\n'
        f'[[notify.targets]]\nurl = "json://127.0.0.1:{down}/x"\nevents = ["sync-failing"]\n',
    )
    proc = laptop.run("notify", "test", check=False)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert lines[0] == f"ntfy://127.0.0.1:{http.port}/…: sent"
    assert lines[1].startswith(f"json://127.0.0.1:{down}/…: FAILED: ")
    assert "test message" in json.loads(http.requests[0].body)["title"]


def test_bad_notify_settings_are_refused(laptop: Laptop) -> None:
    path = configure(
        laptop, '[[notify.targets]]\nurl = "json://127.0.0.1:9/x"\nevents = ["drive-full"]\n'
    )
    line = one_line_error(laptop.run("notify", "test", check=False))
    assert f"{path}: notify.targets[0].events: unknown event 'drive-full'" in line
    assert "(expected some of: sync-failing, mass-change-stopped)" in line


def test_segment_add_keeps_notify_and_makes_the_file_private(
    laptop: Laptop, tmp_path: Path
) -> None:
    """The file is rewritten whole by `segment add`; the URLs, with their passwords, stay,
    and no one else can read them."""
    path = configure(
        laptop,
        '[notify]\nurls = ["json://bob:hunter2@127.0.0.1:9/x"]\nsync_failing_hours = 2\n'
        '[[notify.targets]]\nurl = "ntfy://127.0.0.1:9/t"\nevents = ["sync-failing"]\n',
    )
    path.chmod(0o644)
    folder = tmp_path / "docs"
    folder.mkdir()
    laptop.run("segment", "add", "docs", str(folder))
    text = path.read_text()
    assert "[segments.docs]" in text
    assert 'urls = ["json://bob:hunter2@127.0.0.1:9/x"]' in text
    assert "sync_failing_hours = 2" in text
    assert '[[notify.targets]]\nurl = "ntfy://127.0.0.1:9/t"\nevents = ["sync-failing"]' in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "repeat_hours" not in text  # defaults are not written out


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_syncs_failing_for_hours_are_said_once_then_resolved(
    enrolled: Laptop, cloud: SftpCloud, http: HttpReceiver
) -> None:
    """The daemon's own sync step (`bluegrass run`'s, in this process) with the cloud down: the
    first failure says nothing; with the notifier's clock moved three hours on, the next one
    says so, once; with the cloud back, the next sync resolves it. Every sync pings."""
    docs = enrolled.folder("docs")
    (docs / "a.txt").write_text("a\n")
    enrolled.run("segment", "add", "docs", str(docs))
    with (enrolled.config_dir / "bluegrass.toml").open("a") as fh:
        fh.write(
            f'\n[notify]\nurls = ["json://127.0.0.1:{http.port}/hook"]\n'
            f'ping_url = "http://127.0.0.1:{http.port}/ping/sync"\nsync_failing_hours = 2\n'
        )
    places = Places(enrolled.config_dir, enrolled.state_dir)
    logs: list[str] = []
    daemon = Daemon(settings.load(places), lambda: settings.load(places), logs.append)
    clock = Clock()
    daemon.notifier.clock = clock
    segment = daemon.current.segments()["docs"]

    def hook() -> list[dict]:
        daemon.notifier.flush()  # as the daemon's loop does each round: retries, if any
        return [json.loads(r.body) for r in http.requests if r.path == "/hook"]

    cloud.stop()
    with Interrupts() as interrupts:
        first = daemon._sync(segment, interrupts)
        assert first is not None and first.kind == "retry"
        assert daemon.notifier.wait(20)
        assert hook() == []

        clock.now += 3 * 3600
        assert daemon._sync(segment, interrupts).kind == "retry"  # type: ignore[union-attr]
        wait_until(hook, what="the message", timeout=60)
        assert len(hook()) == 1 and hook()[0]["title"].endswith("Syncs failing: docs")
        # `bluegrass status` says it too, for whoever looks there instead
        problems = enrolled.status()["notify"]["problems"]
        assert [(p["event"], p["subject"], p["said"]) for p in problems] == [
            ("sync-failing", "docs", True)
        ]
        assert "Problem: sync-failing docs since " in enrolled.run("status").stdout

        cloud.start()
        assert daemon._sync(segment, interrupts).kind == "ok"  # type: ignore[union-attr]
    wait_until(lambda: len(hook()) == 2, what="the resolution", timeout=60)
    assert hook()[1]["title"].startswith("Resolved: ")
    assert daemon.notifier.wait(20)
    assert enrolled.status()["notify"] == {"problems": [], "waiting": 0, "last_error": None}
    pings = [r.path for r in http.requests if r.path.startswith("/ping/")]
    assert sorted(pings) == sorted(
        ["/ping/sync/start", "/ping/sync/1"] * 2 + ["/ping/sync/start", "/ping/sync"]
    )
    assert any("sync-failing docs: started" in line for line in logs), logs
