"""The resident login checker: every device login's decision, in `bluegrass-cloud run`.

rclone serve sftp starts its --auth-proxy once per login attempt with no limit: 40 logins
at once were 40 Pythons of ~31 MB each (1.2 GiB) and 40 argon2 checks fighting over two
cores (up to 8.8 s a login). Now the per-login program is a small client
(bluegrass.cloud.authclient) and the decisions are taken here, in one thread of `run`, where
a `Gate` bounds the argon2 checks and `Verified` remembers the secrets already checked. Git
over HTTP's device logins come here too (bluegrass.cloud.webapp), so both share one bound and
one memory (decisions 120, 121).

The socket is DATA/run/auth.sock, owner-only: whoever can connect can ask for any user's
backend. One request a connection: a JSON line in, a JSON line out
({"accepted", "backend", "reason"}).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bluegrass.cloud import authclient, authproxy
from bluegrass.core.errors import BluegrassError

MAX_REQUEST = 64 << 10  # the client has shortened every field already
READ_TIMEOUT = 5.0
MAX_CONNECTIONS = 64  # beyond this, refused as busy at once: each is a thread here

Log = Callable[[str], None]


@dataclass
class CheckerStats:
    """What the checker did since it started, for the benchmark and the run log."""

    accepted: int = 0
    refused: int = 0
    busy: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, decision: authproxy.Decision) -> None:
        with self.lock:
            if decision.accepted:
                self.accepted += 1
            else:
                self.refused += 1
                self.busy += decision.reason.startswith("busy")


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    block_on_close = False
    # listen()'s backlog: socketserver's 5 made a client's connect() fail at once
    # (EAGAIN on a Unix socket) when 40 logins arrived together.
    request_queue_size = 4 * MAX_CONNECTIONS
    checker: LoginChecker

    def server_bind(self) -> None:
        # Owner-only before listen(): a connect() before then is refused anyway.
        super().server_bind()
        Path(self.server_address).chmod(0o600)


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        self.server.checker.serve_one(self.connection)


class LoginChecker:
    """A Unix socket server deciding logins with `authproxy.decide`, a gate and a memory."""

    def __init__(self, data_root: Path, log: Log, gate: authproxy.Gate | None = None) -> None:
        self.data_root = data_root.absolute()
        self.log = log
        self.gate = gate or authproxy.Gate()
        self.verified = authproxy.Verified()
        self.stats = CheckerStats()
        self.path = self.data_root / authclient.SOCKET
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._open = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def start(self) -> None:
        self.path.parent.mkdir(mode=0o700, exist_ok=True)
        if self.path.is_socket():
            if _answers(self.data_root):
                # Replacing it would cut the running checker off from every login.
                raise BluegrassError(
                    f"{self.path}: another `bluegrass-cloud run` is serving this data root"
                )
            self.path.unlink()  # left by a `run` that was killed
        with _short_path(self.path) as address:
            self._server = _Server(address, _Handler, bind_and_activate=True)
        self._server.checker = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="login-checker", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def serve_one(self, conn: socket.socket) -> None:
        conn.settimeout(READ_TIMEOUT)
        try:
            raw = _read_line(conn)
        except OSError:
            return  # the client went away or stalled: nothing was asked
        if not raw.strip():
            return  # connected and closed: a probe (is a checker running?), not a login
        now = time.time()
        try:
            request = json.loads(raw)
            if not isinstance(request, dict):
                raise ValueError("not a JSON object")
        except ValueError:
            request = {"unreadable": "unreadable request from the login client"}
        via = "http" if request.get("via") == "http" else "sftp"
        if not self._open.acquire(blocking=False):
            busy = f"busy: {MAX_CONNECTIONS} logins being checked"
            self._answer(conn, request, authproxy.Decision(False, "none", busy), via, now)
            return
        try:
            decision = authproxy.decide(
                self.data_root,
                request,
                now,
                serve_files=via == "sftp",
                verified=self.verified,
                gate=self.gate,
            )
        except Exception as exc:  # fail closed, and say why in the log
            decision = authproxy.Decision(False, "none", f"internal error: {exc}"[:300])
        finally:
            self._open.release()
        self._answer(conn, request, decision, via, now)

    def _answer(
        self,
        conn: socket.socket,
        request: dict[str, object],
        decision: authproxy.Decision,
        via: str,
        now: float,
    ) -> None:
        self.stats.count(decision)
        try:
            authproxy.write_log(self.data_root, authproxy.log_entry(decision, request, now, via))
        except OSError as exc:
            self.log(f"login checker: cannot write {authproxy.LOG}: {exc}")
        answer: dict[str, object] = {"accepted": decision.accepted, "reason": decision.reason}
        if decision.accepted and decision.root is not None:
            answer["backend"] = decision.backend()
        with contextlib.suppress(OSError):
            conn.sendall(json.dumps(answer).encode() + b"\n")


def _answers(data_root: Path) -> bool:
    """Whether a checker is listening on the data root's socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(2.0)
        try:
            authclient.connect(conn, str(data_root))
        except OSError:
            return False
    return True


def _read_line(conn: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n") and len(data) <= MAX_REQUEST:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data[: MAX_REQUEST + 1]


@contextlib.contextmanager
def _short_path(path: Path) -> Iterator[str]:
    """The path to bind, shortened through /proc/self/fd when AF_UNIX's 107 bytes are short."""
    if len(os.fsencode(path)) < 100:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)
