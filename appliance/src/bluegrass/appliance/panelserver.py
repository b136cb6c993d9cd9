"""The web panel on the home network: gunicorn as a supervised child of `bluegrass-appliance run`.

gunicorn serves bluegrass.appliance.panelbackend (the panel, bluegrass.panel, over this
appliance's state and drive). Through bluegrass.core.supervise it runs in its own process group
(a Ctrl-C in a terminal reaches the daemon, which stops it in order) and, on Linux, under
`setpriv --pdeathsig TERM`, so that a daemon killed outright does not leave it holding the port.
When it dies it is started again after 1 s, doubling up to 60 s; a run that lasted a minute
resets the delay. Its state is published in the state database (key `panel`) for `status`.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bluegrass.appliance.settings import STATE_ENV, Paths
from bluegrass.core import config, gunicorn, secrets_file
from bluegrass.core.errors import BluegrassError
from bluegrass.core.supervise import Backoff, Child, Log

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 25.0  # gunicorn's own graceful timeout is 20 s
DRIVE_DIR_ENV = "BLUEGRASS_APPLIANCE_DRIVE_DIR"
APP = "bluegrass.appliance.panelbackend:create_app_from_env()"
LISTENING = re.compile(r"Listening at: \S+?:(\d+) ")

Publish = Callable[[dict[str, object]], None]


def secret_key(paths: Paths) -> str:
    """The session signing key, STATE/panel-secret.key (0600): made once, then kept."""
    path = paths.panel_secret
    if not path.exists():
        paths.ensure()
    key = secrets_file.read_or_create(path, secrets.token_urlsafe(48))
    if len(key) < 32:
        raise BluegrassError(f"{path}: the panel's session key is too short; delete it")
    return key


def url(bind: str, port: int) -> str:
    """Where a person on the network finds the panel."""
    if bind in ("0.0.0.0", "::"):  # noqa: S104 - naming the address, not binding it
        host = socket.gethostname()
    else:
        host = f"[{bind}]" if ":" in bind else bind
    return f"http://{host}:{port}/"


class PanelServer:
    def __init__(
        self,
        paths: Paths,
        drive_dir: Path | None,
        bind: str,
        port: int,
        log: Log,
        publish: Publish,
    ) -> None:
        self.paths = paths
        self.drive_dir = drive_dir
        self.bind = bind
        self.port = port  # as asked; 0 is any free port
        self.log = log
        self.publish = publish
        self.listening_port: int | None = None
        self.stop_event = threading.Event()
        self.child = Child("panel", log, self._listening, STOP_TIMEOUT)
        self.backoff = Backoff()  # 1 s doubling to 60 s; 1 s again after a minute up
        self._thread: threading.Thread | None = None

    # -- one run of gunicorn --------------------------------------------------------------

    def argv(self) -> list[str]:
        return gunicorn.argv(APP, self.bind, self.port, threads=4, timeout=120)

    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("RCLONE_", "GUNICORN_", "BLUEGRASS_"))
        }
        env[STATE_ENV] = str(self.paths.state)
        env[DRIVE_DIR_ENV] = str(self.drive_dir) if self.drive_dir else ""
        return env

    def start(self) -> None:
        argv = self.argv()
        self.listening_port = None
        self.child.start(argv, self.env(), self.paths.state)
        self.publish_state("starting")

    def _listening(self, line: str) -> bool:
        found = LISTENING.search(line)
        if found:
            self.listening_port = int(found.group(1))
        return found is not None

    def wait_ready(self, timeout: float) -> bool:
        """True once gunicorn listens; False if it exited, on timeout, or when stopping."""
        if self.child.wait_ready(timeout, self.stop_event):
            self.publish_state("up")
            return True
        return False

    def publish_state(self, state: str) -> None:
        port = self.listening_port or self.port
        self.publish(
            {
                "state": state,
                "bind": self.bind,
                "port": port,
                "url": url(self.bind, port) if port else None,
                "pid": self.child.pid if state in ("starting", "up") else None,
                "since": time.time(),
                "message": self.child.last_line if state == "down" else "",
            }
        )

    # -- supervision ----------------------------------------------------------------------

    def start_first(self) -> None:
        """Start gunicorn and wait until it listens; a setup that cannot work fails here."""
        self.start()
        if self.wait_ready(READY_TIMEOUT):
            if self.port == 0 and self.listening_port:
                self.port = self.listening_port  # a restart comes back where people look
            self.log(f"panel: serving on {url(self.bind, self.port)}")
            self._thread = threading.Thread(target=self._supervise, name="panel", daemon=True)
            self._thread.start()
            return
        stopping = self.stop_event.is_set()
        self.child.stop()
        if stopping:
            return
        self.publish_state("down")
        why = self.child.last_line or "no output"
        raise BluegrassError(
            f"the panel did not start on {config.host_port(self.bind, self.port)}: {why}"
        )

    def _supervise(self) -> None:
        while True:
            while not self.stop_event.wait(1.0) and self.child.poll() is None:
                pass
            if self.stop_event.is_set():
                return
            code = self.child.stop()
            self.publish_state("down")
            delay = self.backoff.next(self.child.started)
            self.log(f"panel: gunicorn exited (code {code}); restarting in {delay:g}s")
            if self.stop_event.wait(delay):
                return
            self.start()
            if self.wait_ready(READY_TIMEOUT):
                self.log(f"panel: serving again on {url(self.bind, self.listening_port or 0)}")
            elif not self.stop_event.is_set():
                self.child.stop()  # never came up: the next round starts it again

    def stop(self) -> None:
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(READY_TIMEOUT + 5)
        code = self.child.stop()
        if code is not None:
            self.log(f"panel: stopped (exit code {code})")
        self.publish_state("stopped")
