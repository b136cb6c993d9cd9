"""What a role calls: a problem's state, one-off events, job pings, and `notify test`.

    notifier.update("commit-failed", "alice/docs", active=failed, detail=why)

is the whole wiring of an event: called after every run of the check that can see the
problem, with what it saw. The first active call sends "started", later ones nothing until
`repeat_hours` have passed since the last message (then "still"), the first inactive one
"resolved". Messages go into the outbox (bluegrass.core.notify.store) and a short-lived child
delivers them (bluegrass.core.notify.deliver): the caller never waits on a network.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bluegrass.core.notify import deliver
from bluegrass.core.notify.events import EVENTS
from bluegrass.core.notify.masking import mask
from bluegrass.core.notify.settings import NotifySettings
from bluegrass.core.notify.store import Folder, Held, hold

Log = Callable[[str], None]
MESSAGE_LIFETIME = 2 * 86400.0  # a message not delivered in two days is dropped (and logged)
PING_LIFETIME = 3600.0  # a late ping would tell the monitor a job ran when it did not
OUTBOX_LIMIT = 500  # past this the oldest are dropped: a receiver down for weeks, no storm
DETAIL_LIMIT = 2000

STARTED, REPEATED, RESOLVED = "started", "repeated", "resolved"


@dataclass(frozen=True)
class TestResult:
    url: str  # masked
    ok: bool
    error: str


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).astimezone().strftime("%Y-%m-%d %H:%M %Z")


class Notifier:
    def __init__(
        self,
        root: Path,
        settings: NotifySettings,
        *,
        role: str,
        log: Log | None = None,
        echo: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`root`: the role's state folder (notify/ goes in it). `echo`: the delivery child
        writes its lines on this process's standard error too (a daemon's log)."""
        self.folder = Folder(root)
        self.root = root
        self.settings = settings
        self.role = role
        self.log = log or (lambda line: None)
        self.echo = echo
        self.clock = clock
        self.host = socket.gethostname()
        self._children: list[subprocess.Popen] = []

    # -- problems and events -------------------------------------------------------------

    def update(
        self, event: str, subject: str, *, active: bool, detail: str = "", after: float = 0.0
    ) -> str | None:
        """The problem `event` about `subject` is (still) there, or not: what was queued.
        `after`: said only once it has lasted this many seconds (a blip is not news, and a
        problem that comes and goes within it never makes a message). Never raises for a
        state folder it cannot write: that is logged, and the job goes on."""
        try:
            return self._update(event, subject, active, detail, after)
        except OSError as exc:
            self.log(f"notify: could not record {event} {subject}: {exc}")
            return None

    def _update(
        self, event: str, subject: str, active: bool, detail: str, after: float
    ) -> str | None:
        targets = self._targets(event)
        if not targets:
            return None
        now = self.clock()
        key = f"{event}:{subject}"
        detail = detail[:DETAIL_LIMIT]
        with self.folder.changing() as state:
            problem = state["problems"].get(key)
            if active and problem is None:
                problem = state["problems"][key] = {"since": now, "last_sent": None}
            if active:
                problem["detail"] = detail
                if problem["last_sent"] is None:
                    if now - problem["since"] < after:
                        return None
                    what = STARTED
                    title = self._title(event, subject)
                    body = detail if not after else f"Since {_when(problem['since'])}. {detail}"
                elif now - problem["last_sent"] >= self.settings.repeat_seconds:
                    what = REPEATED
                    title = self._title(event, subject) + " (still)"
                    body = f"Since {_when(problem['since'])}. {detail}".strip()
                else:
                    return None
                problem["last_sent"] = now
            elif problem is not None:
                del state["problems"][key]
                if problem["last_sent"] is None:  # never said: nothing to take back
                    return None
                what = RESOLVED
                title = "Resolved: " + self._title(event, subject)
                body = f"It had lasted since {_when(problem['since'])}. {detail}".strip()
            else:
                return None
            label = f"{event} {subject} ({what})"
            for url in targets:
                self._queue(state, "message", url, label, title=title, body=body)
        self.log(f"notify: {event} {subject}: {what}; queued for {len(targets)} target(s)")
        self.flush()
        return what

    def occurred(self, event: str, subject: str, detail: str = "") -> bool:
        """A one-off event (a lockout, a request): sent unless the same was sent within
        `repeat_hours`, so a flood of them is one message."""
        try:
            return self._occurred(event, subject, detail)
        except OSError as exc:
            self.log(f"notify: could not record {event} {subject}: {exc}")
            return False

    def _occurred(self, event: str, subject: str, detail: str) -> bool:
        targets = self._targets(event)
        if not targets:
            return False
        now = self.clock()
        key = f"{event}:{subject}"
        with self.folder.changing() as state:
            once = state.setdefault("once", {})
            if now - once.get(key, -1e18) < self.settings.repeat_seconds:
                return False
            once[key] = now
            # forget what is past the window: the file stays small
            for old in [k for k, at in once.items() if now - at >= self.settings.repeat_seconds]:
                if old != key:
                    del once[old]
            title, label = self._title(event, subject), f"{event} {subject}"
            for url in targets:
                self._queue(state, "message", url, label, title=title, body=detail[:DETAIL_LIMIT])
        self.log(f"notify: {event} {subject}; queued for {len(targets)} target(s)")
        self.flush()
        return True

    def summary(self) -> dict[str, Any]:
        """For a role's status: the problems seen and not resolved (said or not yet), and
        what waits in the outbox with the last error (URLs already masked out of it)."""
        state = self.folder.read() if self.folder.state.exists() else {}
        problems = [
            {
                "event": key.split(":", 1)[0],
                "subject": key.split(":", 1)[1],
                "since": datetime.fromtimestamp(p["since"]).astimezone().isoformat("T", "seconds"),
                "said": p.get("last_sent") is not None,
            }
            for key, p in sorted(state.get("problems", {}).items())
        ]
        waiting = state.get("outbox", [])
        errors = [e["error"] for e in waiting if e.get("error")]
        return {
            "problems": problems,
            "waiting": len(waiting),
            "last_error": errors[-1] if errors else None,
        }

    def active(self) -> dict[str, dict[str, Any]]:
        """The problems seen and not yet resolved, by "event:subject" ("last_sent" None: not
        said yet, waiting for `after`)."""
        return self.folder.read()["problems"] if self.folder.state.exists() else {}

    def _targets(self, event: str) -> list[str]:
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}")  # a bug in the caller, not the config
        return [t.url for t in self.settings.targets if t.wants(event)]

    def _title(self, event: str, subject: str) -> str:
        return f"Bluegrass {self.role} {self.host}: {EVENTS[event].title}: {subject}"

    def _queue(self, state: dict[str, Any], kind: str, url: str, label: str, **body: str) -> None:
        now = self.clock()
        lifetime = PING_LIFETIME if kind == "ping" else MESSAGE_LIFETIME
        state["outbox"].append(
            {
                "id": secrets.token_hex(8),
                "kind": kind,
                "url": url,
                "label": label,
                "created": now,
                "attempts": 0,
                # the delivery child runs on the real clock
                "next_try": time.time(),
                "expires": time.time() + lifetime,
                "timeout": self.settings.timeout_seconds,
                **body,
            }
        )
        if len(state["outbox"]) > OUTBOX_LIMIT:
            dropped = state["outbox"][: len(state["outbox"]) - OUTBOX_LIMIT]
            del state["outbox"][: len(dropped)]
            self.log(f"notify: outbox full; dropped {len(dropped)} oldest undelivered")

    # -- delivery ------------------------------------------------------------------------

    def flush(self) -> None:
        """Start a delivery child if something is due and no child is taking work (a daemon
        calls this now and then, so what failed is retried even when nothing new happens).
        Never raises: a state folder it cannot read is logged."""
        try:
            self._flush()
        except (OSError, ValueError) as exc:
            self.log(f"notify: could not look at the outbox: {exc}")

    def _flush(self) -> None:
        self._children = [c for c in self._children if c.poll() is None]
        if not self.folder.state.exists():
            return
        now = time.time()
        with hold(self.folder.lock, wait=True):
            state = self.folder.read()
            if not any(e["next_try"] <= now for e in state["outbox"]):
                return
            if state.get("deliverer") is not None and _held(self.folder.sender_lock):
                return  # it decides under this lock whether to leave: it will see the work
        self._spawn()

    def _spawn(self) -> None:
        command = [sys.executable, "-m", "bluegrass.core.notify.worker", str(self.root)]
        if self.echo:
            command.append("--echo")
        options: dict[str, Any] = {}
        if sys.platform == "win32":
            options["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | getattr(
                subprocess, "DETACHED_PROCESS", 0
            )
        else:
            options["start_new_session"] = True  # a Ctrl-C on the job does not kill it
        try:
            self._children.append(
                subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=None if self.echo else subprocess.DEVNULL,
                    close_fds=True,
                    **options,
                )
            )
        except OSError as exc:
            self.log(f"notify: could not start the delivery: {exc}; the next job retries")

    def wait(self, timeout: float) -> bool:
        """Wait for this process's delivery children (a command about to exit, tests)."""
        deadline = time.monotonic() + timeout
        for child in self._children:
            try:
                child.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                return False
        return True

    # -- pings ---------------------------------------------------------------------------

    def ping(self, job: str) -> Ping:
        return Ping(self, job, self.settings.pings.get(job, ""))

    def _queue_ping(self, url: str, label: str, body: str) -> None:
        try:
            with self.folder.changing() as state:
                self._queue(state, "ping", url, label, body=body)
        except OSError as exc:  # a ping lost is better than a job stopped for it
            self.log(f"notify: could not queue {label}: {exc}")
            return
        self.flush()

    # -- notify test ---------------------------------------------------------------------

    def test(self) -> list[TestResult]:
        """A test message to every target and a ping's worth of nothing to none: sent now,
        in this process, each bounded by `timeout_seconds`."""
        results = []
        title = f"Bluegrass {self.role} {self.host}: test message"
        body = "This is a test of Bluegrass's notifications; nothing is wrong."
        for target in self.settings.targets:
            sent = deliver.send_message(target.url, title, body, self.settings.timeout_seconds)
            results.append(TestResult(mask(target.url), sent.ok, sent.error))
        return results


def _held(path: Path) -> bool:
    """Whether a live process holds the lock at `path` (a crashed child's is free)."""
    try:
        with hold(path, wait=False):
            return False
    except Held:
        return True


def ping_url(base: str, suffix: str) -> str:
    """`base` with "/suffix" added to its path (its query, if any, kept after it)."""
    if not suffix:
        return base
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/" + suffix))


class Ping:
    """One run of a job, told to its ping URL as borgmatic's healthchecks hook does: /start,
    then the URL itself on success, /EXIT-CODE (or /fail) with the end of the log on failure.
    Without a URL every call does nothing."""

    def __init__(self, notifier: Notifier, job: str, url: str) -> None:
        self.notifier = notifier
        self.job = job
        self.url = url
        self.started = False
        self.ended = False

    def start(self) -> None:
        self.started = True
        self._send("start", "")

    def success(self, log: str = "") -> None:
        self._send("", log)

    def fail(self, exit_code: int | None = None, log: str = "") -> None:
        self._send("fail" if exit_code is None else str(exit_code), log)

    def _send(self, suffix: str, log: str) -> None:
        if suffix != "start":
            self.ended = True
        if not self.url:
            return
        limit = self.notifier.settings.ping_log_bytes
        data = log.encode("utf-8")
        # the end of a log says most: keep its last bytes
        body = data[len(data) - limit :].decode("utf-8", "ignore") if len(data) > limit else log
        self.notifier._queue_ping(
            ping_url(self.url, suffix), f"ping {self.job} {suffix or 'success'}", body
        )

    @contextlib.contextmanager
    def running(self) -> Iterator[Ping]:
        """start; success at the end unless the block said fail; an exception fails it."""
        self.start()
        try:
            yield self
        except BaseException as exc:
            if not self.ended:
                self.fail(None, f"{type(exc).__name__}: {exc}")
            raise
        if not self.ended:
            self.success()


def test_report(results: list[TestResult], config_path: Path | None) -> tuple[list[str], int]:
    """What `notify test` prints, one line per URL, and its exit code (1 if any failed, or
    there was nothing to test)."""
    if not results:
        where = config_path or "the configuration file"
        return [f"no notification URLs ([notify] urls or [[notify.targets]] in {where})"], 1
    lines = [f"{r.url}: {'sent' if r.ok else 'FAILED: ' + r.error}" for r in results]
    return lines, 0 if all(r.ok for r in results) else 1
