"""`bluegrass-cloud run`: the cloud role as one supervised foreground process.

It runs the sync endpoint (`rclone serve sftp` with our auth proxy) as a child and restarts
it, with a growing delay, whenever it dies; runs the daily commits and `maintain`; answers
on the HTTP port (gunicorn, also supervised) GET /health and the web interface for people;
serves the same app over TLS on the device port (a second supervised gunicorn, with the key
that enrollment codes pin), where devices ask for the segment list, segment states and git
over HTTP; and logs one line per event on stderr. SIGTERM or SIGINT stops everything and exits 0.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import signal
import sys
import threading
from datetime import datetime
from pathlib import Path
from types import FrameType

from bluegrass.cloud import hostkey, settings, setupcode, tlskey
from bluegrass.cloud.accounts import Accounts
from bluegrass.cloud.authserver import LoginChecker
from bluegrass.cloud.datadir import STATUS_FILE, DataRoot
from bluegrass.cloud.endpoint import DeviceServer, Endpoint, WebServer, authproxy_command
from bluegrass.cloud.scheduler import Scheduler
from bluegrass.core import rclone
from bluegrass.core.errors import BluegrassError, UsageError
from bluegrass.core.supervise import Backoff

READY_TIMEOUT = 30.0
STABLE = 60.0  # a child up this long restarts after the first delay again
MAX_DELAY = 60.0
REVISION_CHECK = 1.0


def _port(option: str, text: str | None, default: int) -> int:
    # Checked here rather than by argparse, whose errors name the subcommand, not the program.
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"{option}: not a port number: {text!r}") from None
    if not settings.is_port(value):
        raise UsageError(f"{option}: port {value} is out of range (1-65535)")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run the cloud server in the foreground",
        description="Run the cloud role in the foreground: the sync endpoint (restarted if it "
        "dies), the daily commits at [schedule] commit_at (or a segment's own), the HTTP "
        "port (GET /health and the web interface) and the device port (the same over TLS with "
        "the pinned key: segment lists and read-only git over HTTP for devices). Logs "
        "one line per event on stderr; stop with SIGTERM "
        "or Ctrl-C. Options override [server] in the configuration for this run only; "
        "enrollment codes always carry the configured values.",
    )
    p.add_argument("--bind", help="the address to listen on (default: [server] bind)")
    p.add_argument("--sftp-port", help="the sync endpoint's port (default: [server] sftp_port)")
    p.add_argument("--http-port", help="the HTTP port (default: [server] http_port)")
    p.add_argument("--device-port", help="the devices' HTTPS port (default: [server] device_port)")
    p.set_defaults(handler=run)


class _Log:
    """One line per event on stderr, from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def __call__(self, message: str) -> None:
        stamp = datetime.now().astimezone().isoformat(timespec="seconds")
        with self._lock:
            sys.stderr.write(f"{stamp} {message}\n")
            sys.stderr.flush()


class _Status(dict[str, str]):
    """The run's state, also written to DATA/run/status.json for the web server's /health."""

    def __init__(self, data_root: Path, **values: str) -> None:
        super().__init__(values)
        self.path = data_root / STATUS_FILE
        self._write()

    def __setitem__(self, key: str, value: str) -> None:
        super().__setitem__(key, value)
        self._write()

    def _write(self) -> None:
        self.path.parent.mkdir(exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(dict(self)))
        tmp.replace(self.path)


def _keep_serving(
    server: WebServer, stop: threading.Event, log: _Log, first_ready: threading.Event
) -> None:
    """Start the web server and restart it whenever it dies, until `stop`."""
    backoff = Backoff(most=MAX_DELAY, stable=STABLE)
    while not stop.is_set():
        server.start()
        if server.wait_ready(READY_TIMEOUT, stop):
            first_ready.set()
            log(f"{server.name}: serving on {server.bind} port {server.port}")
            while not stop.wait(1.0) and server.poll() is None:
                pass
        if stop.is_set():
            break
        if not first_ready.is_set() and server.poll() is not None:
            first_ready.set()  # never came up: run() reports it and stops
            return
        code = server.stop()
        delay = backoff.next(server.started)
        log(f"{server.name}: server exited (code {code}); restarting in {delay:g}s")
        stop.wait(delay)


def run(args: argparse.Namespace) -> int:
    root = DataRoot.from_args(args.data).require()
    cfg = settings.load(root.path)
    bind = args.bind if args.bind is not None else cfg.get("server.bind")
    if not settings.is_host(bind):
        raise UsageError(f"--bind: not an IP address or host name: {bind!r}")
    sftp_port = _port("--sftp-port", args.sftp_port, cfg.get("server.sftp_port"))
    http_port = _port("--http-port", args.http_port, cfg.get("server.http_port"))
    device_port = _port("--device-port", args.device_port, cfg.get("server.device_port"))
    if sftp_port == http_port:
        raise UsageError(f"the sync endpoint and the HTTP server cannot share port {sftp_port}")
    if device_port in (sftp_port, http_port):
        raise UsageError(
            f"the device port {device_port} must differ from the sync endpoint's and the HTTP "
            "server's"
        )
    # Everything that can be wrong with the setup fails here, before anything starts.
    hostkey.ensure(root.path)
    tlskey.ensure(root.path)
    Accounts.open(root.path).close()
    rclone.binary()
    authproxy_command()
    from bluegrass.cloud.panelbackend import secret_key  # Flask, only for `run`

    secret_key(root.path)  # made once here, before the web server's workers look for it
    # Until an administrator exists the web setup page asks for a one-time code that only
    # whoever runs the server sees (logged below); a stale one goes once setup is done.
    if setupcode.setup_pending(root.path):
        setup_code: str | None = setupcode.ensure_setup_code(root.path)
    else:
        setup_code = None
        setupcode.remove_setup_code(root.path)

    log = _Log()
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    # Every device login is decided by this thread, the web server's and the endpoint's alike.
    # A failed start below exits the process, thread and all; its socket is replaced next time.
    checker = LoginChecker(root.path, log)
    checker.start()
    status = _Status(root.path, sync_endpoint="starting")
    web = WebServer(root.path, bind, http_port, log)
    devices = DeviceServer(root.path, bind, device_port, log)
    threads = []
    for server in (web, devices):
        ready = threading.Event()
        thread = threading.Thread(
            target=_keep_serving, args=(server, stop, log, ready), name=server.name, daemon=True
        )
        thread.start()
        threads.append((server, thread, ready))
    for server, _, ready in threads:
        ready.wait(READY_TIMEOUT)
        if server.poll() is not None or not server.ready.is_set():
            stop.set()
            for other, thread, _ in threads:
                thread.join(5)
                other.stop()
            why = server.last_line or "no output"
            raise BluegrassError(
                f"the {server.title} did not start on {bind} port {server.port}: {why}"
            )
    if setup_code is not None:
        _announce_setup(root, cfg.get("server.address"), bind, http_port, setup_code, log)
    scheduler = Scheduler(root, stop, log)
    endpoint = Endpoint(root.path, bind, sftp_port, log)
    try:
        _supervise(root, endpoint, stop, status, log, scheduler)
    finally:
        status["sync_endpoint"] = "stopping"
        code = endpoint.stop()
        if code is not None:
            log(f"sync endpoint stopped (exit code {code})")
        stop.set()
        for server, thread, _ in threads:
            thread.join(30)
            code = server.stop()
            if code is not None:
                log(f"{server.title} stopped (exit code {code})")
        if scheduler.is_alive():
            log("waiting for the scheduler to finish its current job")
            scheduler.join(60)
        checker.stop()
    log("stopped")
    return 0


def _announce_setup(
    root: DataRoot, address: str, bind: str, port: int, code: str, log: _Log
) -> None:
    # Listening on every interface: the address devices are given is the one to open.
    try:
        everywhere = ipaddress.ip_address(bind).is_unspecified
    except ValueError:
        everywhere = False
    host = address if everywhere else bind
    if ":" in host:
        host = f"[{host}]"
    path = setupcode.setup_code_path(root.path)
    log(
        f"web setup pending: open http://{host}:{port}/setup and enter the setup code {code} "
        f"(also in {path}; `bluegrass-cloud web setup-code` prints it)"
    )


def _supervise(
    root: DataRoot,
    endpoint: Endpoint,
    stop: threading.Event,
    status: dict[str, str],
    log: _Log,
    scheduler: Scheduler,
) -> None:
    backoff = Backoff(most=MAX_DELAY, stable=STABLE)
    first = True
    with Accounts.open(root.path) as accounts:
        revision = accounts.credentials_revision()
        while not stop.is_set():
            endpoint.start()
            log(f"sync endpoint starting (pid {endpoint.pid})")
            if not endpoint.wait_ready(READY_TIMEOUT, stop):
                if stop.is_set():
                    return
                endpoint.stop()
                if first:
                    raise BluegrassError(
                        f"the sync endpoint did not start: {endpoint.last_line or 'no output'}"
                    )
                status["sync_endpoint"] = "down"
                delay = backoff.next(None)
                log(f"sync endpoint failed to start; retrying in {delay:g}s")
                stop.wait(delay)
                continue
            if first:
                first = False
                scheduler.start()  # only once the endpoint works: a bad setup commits nothing
            status["sync_endpoint"] = "up"
            log(f"sync endpoint ready on {endpoint.bind} port {endpoint.port}")
            restart_now = False
            while not stop.wait(REVISION_CHECK):
                if endpoint.poll() is not None:
                    break
                current = accounts.credentials_revision()
                if current != revision:
                    # rclone keeps a login's backend for minutes and open sessions forever:
                    # only a restart makes a revocation take effect at once.
                    revision = current
                    log("credentials revoked or removed: restarting the sync endpoint")
                    endpoint.stop()
                    restart_now = True
                    break
            if stop.is_set():
                return
            status["sync_endpoint"] = "down"
            if restart_now:
                continue
            code = endpoint.poll()
            delay = backoff.next(endpoint.started)
            log(f"sync endpoint exited (code {code}); restarting in {delay:g}s")
            stop.wait(delay)
