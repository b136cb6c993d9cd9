"""`bluegrass-cloud run`: the cloud role as one supervised foreground process.

It runs the sync endpoint (`rclone serve sftp` with our auth proxy) as a child and restarts
it, with a growing delay, whenever it dies; runs the daily commits and `maintain`; answers
GET /health on the HTTP port (the web server comes later); and logs one line per event on
stderr. SIGTERM or SIGINT stops everything and exits 0.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType

from bluegrass.cloud import hostkey, settings
from bluegrass.cloud.accounts import Accounts
from bluegrass.cloud.datadir import DataRoot
from bluegrass.cloud.endpoint import Endpoint, authproxy_program
from bluegrass.cloud.scheduler import Scheduler
from bluegrass.core import rclone
from bluegrass.core.errors import BluegrassError, UsageError

READY_TIMEOUT = 30.0
STABLE = 60.0  # an endpoint up this long resets the restart delay
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
        "dies), the daily commits at [schedule] commit_at (or a segment's own), and the HTTP "
        "port (for now only GET /health). Logs one line per event on stderr; stop with SIGTERM "
        "or Ctrl-C. Options override [server] in the configuration for this run only; "
        "enrollment codes always carry the configured values.",
    )
    p.add_argument("--bind", help="the address to listen on (default: [server] bind)")
    p.add_argument("--sftp-port", help="the sync endpoint's port (default: [server] sftp_port)")
    p.add_argument("--http-port", help="the HTTP port (default: [server] http_port)")
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


def _health_server(bind: str, port: int, status: dict[str, str]) -> ThreadingHTTPServer:
    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/health":
                self.send_error(404)
                return
            body = json.dumps({"ok": status["sync_endpoint"] == "up", **status}).encode()
            self.send_response(200 if status["sync_endpoint"] == "up" else 503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # health checks every few seconds would drown the log

    server_class = ThreadingHTTPServer
    if ":" in bind:
        import socket

        class V6(ThreadingHTTPServer):
            address_family = socket.AF_INET6

        server_class = V6
    try:
        return server_class((bind, port), Health)
    except OSError as exc:
        raise BluegrassError(
            f"cannot listen on {bind} port {port} (HTTP): {exc.strerror}"
        ) from None


def run(args: argparse.Namespace) -> int:
    root = DataRoot.from_args(args.data).require()
    cfg = settings.load(root.path)
    bind = args.bind if args.bind is not None else cfg.get("server.bind")
    if not settings.is_host(bind):
        raise UsageError(f"--bind: not an IP address or host name: {bind!r}")
    sftp_port = _port("--sftp-port", args.sftp_port, cfg.get("server.sftp_port"))
    http_port = _port("--http-port", args.http_port, cfg.get("server.http_port"))
    if sftp_port == http_port:
        raise UsageError(f"the sync endpoint and the HTTP server cannot share port {sftp_port}")
    # Everything that can be wrong with the setup fails here, before anything starts.
    hostkey.ensure(root.path)
    Accounts.open(root.path).close()
    rclone.binary()
    authproxy_program()

    log = _Log()
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    status = {"sync_endpoint": "starting"}
    http = _health_server(bind, http_port, status)
    threading.Thread(target=http.serve_forever, name="http", daemon=True).start()
    log(f"http: listening on {bind} port {http_port} (GET /health)")
    scheduler = Scheduler(root, stop, log)
    endpoint = Endpoint(root.path, bind, sftp_port, log)
    try:
        _supervise(root, endpoint, stop, status, log, scheduler)
    finally:
        status["sync_endpoint"] = "stopping"
        code = endpoint.stop()
        if code is not None:
            log(f"sync endpoint stopped (exit code {code})")
        http.shutdown()
        http.server_close()
        if scheduler.is_alive():
            log("waiting for the scheduler to finish its current job")
            scheduler.join(60)
    log("stopped")
    return 0


def _supervise(
    root: DataRoot,
    endpoint: Endpoint,
    stop: threading.Event,
    status: dict[str, str],
    log: _Log,
    scheduler: Scheduler,
) -> None:
    delay = 1.0
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
                log(f"sync endpoint failed to start; retrying in {delay:g}s")
                stop.wait(delay)
                delay = min(delay * 2, MAX_DELAY)
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
            if time.monotonic() - endpoint.started > STABLE:
                delay = 1.0
            log(f"sync endpoint exited (code {code}); restarting in {delay:g}s")
            stop.wait(delay)
            delay = min(delay * 2, MAX_DELAY)
