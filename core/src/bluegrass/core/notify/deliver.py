"""Delivering the outbox: messages through Apprise, pings over plain HTTP.

Run as a short-lived child (`python -m bluegrass.core.notify.worker ROOT`), started by a
role's Notifier whenever it queues something, so a job never waits on a mail server or a
webhook and a hung one never holds a job up: each send is bounded (`timeout_seconds`), a
failed one is tried again after RETRY_DELAYS, and one the receiver has not taken before its
entry expires is dropped, each said in notify/notify.log (and on the role's log, when the
role passed its standard error on). One child delivers at a time (notify/sender.lock); a
second waits for the first, then finds its work done. A child of a command stays while a
retry is due within STAY seconds, and leaves the rest to the next child; a child of a daemon,
whose standard error it holds (a pipe its reader waits on), makes one pass and leaves the
retries to the daemon's next `flush`, so that what they do is in the daemon's log too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bluegrass.core.notify.masking import mask, redact
from bluegrass.core.notify.store import Folder, hold

RETRY_DELAYS = (5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0)  # then hourly until the entry expires
STAY = 60.0
POLL = 0.5


@dataclass(frozen=True)
class Sent:
    ok: bool
    error: str = ""  # why not, with every part of the URL taken out


class _Timeout(Exception):
    pass


@contextlib.contextmanager
def _bounded(seconds: float) -> Iterator[None]:
    """Interrupt whatever blocks past `seconds` (a server that accepts and never answers);
    only in a main thread, where a signal can; elsewhere the libraries' own socket timeouts
    are the bound."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(
        signal, "setitimer"
    ):
        yield
        return

    def expired(signum: int, frame: object) -> None:
        raise _Timeout(f"no answer within {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def send_message(url: str, title: str, body: str, timeout: float) -> Sent:
    """One message to one Apprise URL; never raises."""
    import apprise

    logger = logging.getLogger("apprise")
    collect = _Collect()
    # Apprise's own log lines can carry a URL's parts: kept here, redacted, never propagated.
    logger.addHandler(collect)
    propagate, logger.propagate = logger.propagate, False
    try:
        plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
        if plugin is None:
            return Sent(False, "Apprise cannot parse this URL")
        for name in ("socket_connect_timeout", "socket_read_timeout"):
            if hasattr(plugin, name):
                setattr(plugin, name, timeout)
        with _bounded(timeout + 5.0):
            # Apprise refuses an empty body (measured): the title stands in for it
            ok = bool(plugin.notify(body=body or title, title=title))
        if ok:
            return Sent(True)
        why = collect.messages[-1] if collect.messages else "the service refused it"
        return Sent(False, redact(why, [url]))
    except Exception as exc:
        return Sent(False, redact(str(exc) or type(exc).__name__, [url]))
    finally:
        logger.removeHandler(collect)
        logger.propagate = propagate


def send_ping(url: str, body: str, timeout: float) -> Sent:
    """One ping: a POST (healthchecks takes the body as the ping's log); never raises."""
    request = urllib.request.Request(  # noqa: S310 - http(s) only, checked at load
        url,
        data=body.encode("utf-8"),
        method="POST",
        headers={"Content-Type": "text/plain; charset=utf-8", "User-Agent": "bluegrass"},
    )
    try:
        with _bounded(timeout + 5.0), urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310
            reply.read(1024)
        return Sent(True)
    except urllib.error.HTTPError as exc:
        return Sent(False, f"HTTP {exc.code}")
    except Exception as exc:
        reason = getattr(exc, "reason", None) or exc
        return Sent(False, redact(str(reason) or type(exc).__name__, [url]))


def send_entry(entry: dict[str, Any], timeout: float) -> Sent:
    if entry["kind"] == "ping":
        return send_ping(entry["url"], entry.get("body", ""), timeout)
    return send_message(entry["url"], entry["title"], entry["body"], timeout)


def retry_delay(attempts: int) -> float:
    return RETRY_DELAYS[min(attempts, len(RETRY_DELAYS)) - 1]


def _describe(entry: dict[str, Any]) -> str:
    return f"{entry['label']} to {mask(entry['url'])}"


class Deliverer:
    def __init__(self, root: Path, echo: bool) -> None:
        self.folder = Folder(root)
        self.echo = echo

    def say(self, line: str) -> None:
        self.folder.append_log(line)
        if self.echo:  # as the roles' own logs stamp their lines
            stamp = datetime.now().astimezone().isoformat(timespec="seconds")
            print(f"{stamp} {line}", file=sys.stderr, flush=True)

    def run(self) -> None:
        self.folder.ensure()
        stay = 0.0 if self.echo else STAY
        with hold(self.folder.sender_lock, wait=True):
            stay_until = time.time() + stay
            while True:
                due, leaving = self._next(stay_until)
                if leaving:
                    return
                for entry in due:
                    self._attempt(entry)
                if due:
                    stay_until = time.time() + stay
                else:
                    time.sleep(POLL)

    def _next(self, stay_until: float) -> tuple[list[dict[str, Any]], bool]:
        """What is due now, or whether to leave. Decided under the state's lock, and the
        decision written there ("deliverer"): a process queueing a message looks at it under
        the same lock, so it either sees this child still taking work or starts another."""
        now = time.time()
        with self.folder.changing() as state:
            kept = []
            for entry in state["outbox"]:
                if entry["expires"] <= now:
                    self.say(
                        f"notify: gave up sending {_describe(entry)} after "
                        f"{entry['attempts']} attempts (last: {entry.get('error', '')})"
                    )
                else:
                    kept.append(entry)
            state["outbox"] = kept
            due = [dict(e) for e in kept if e["next_try"] <= now]
            soonest = min((e["next_try"] for e in kept), default=None)
            leaving = not due and (soonest is None or soonest > stay_until or now >= stay_until)
            state["deliverer"] = None if leaving else os.getpid()
            return due, leaving

    def _attempt(self, entry: dict[str, Any]) -> None:
        sent = send_entry(entry, float(entry.get("timeout", 20.0)))
        with self.folder.changing() as state:
            current = next((e for e in state["outbox"] if e["id"] == entry["id"]), None)
            if current is None:
                return
            if sent.ok:
                state["outbox"].remove(current)
                self.say(f"notify: sent {_describe(entry)}")
                return
            current["attempts"] += 1
            delay = retry_delay(current["attempts"])
            current["next_try"] = time.time() + delay
            current["error"] = sent.error
            self.say(
                f"notify: could not send {_describe(entry)} (attempt {current['attempts']}): "
                f"{sent.error}; retrying in {delay:g} s"
            )
