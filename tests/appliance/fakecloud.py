"""A stand-in for the cloud's HTTP side (bluegrass.core.httpspec), for the appliance's tests.

Real `git http-backend` as CGI behind a small threaded HTTP server on 127.0.0.1, with per-user
Basic auth and the segments listing, until the cloud's own server lands (then the end-to-end
test uses that). It can also pause in the middle of sending a pack, so a test can pull the
drive at a known moment instead of racing the fetch.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from bluegrass.core import httpspec
from bluegrass.core.store.repository import BRANCH

from tests.support import tls

CHUNK = 64 * 1024


class FakeCloud:
    def __init__(self, repos: Path, passwords: dict[str, str], port: int = 0) -> None:
        self.repos = repos
        self.passwords = passwords
        self.pause_after: int | None = None  # bytes of a pack response before pausing
        self.paused = threading.Event()
        self.resume = threading.Event()
        self.requests: list[str] = []
        handler = type("Handler", (_Handler,), {"cloud": self})
        self.server = _TLSServer(("127.0.0.1", port), handler)
        # The cloud's device port is HTTPS with a pinned key: so is this one (the key every
        # test enrollment pins, tests.appliance.conftest.enrollment).
        self.server.socket = (
            tls.shared().server_context().wrap_socket(self.server.socket, server_side=True)
        )
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def __enter__(self) -> FakeCloud:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.resume.set()
        self.server.shutdown()
        self.server.server_close()

    def segments(self, user: str) -> list[dict[str, object]]:
        found = []
        folder = self.repos / user
        for repo in sorted(folder.glob("*.git")) if folder.is_dir() else []:
            name = repo.name[: -len(".git")]
            head = subprocess.run(
                ["git", "--git-dir", str(repo), "rev-parse", "--verify", "--quiet", BRANCH],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
            found.append({"name": name, "git": httpspec.git_path(user, name), "head": head or None})
        return found


class _TLSServer(ThreadingHTTPServer):
    def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
        # A CGI answer has no length: its end is the close, which GnuTLS (git's libcurl) takes
        # for a truncation unless TLS's close_notify comes first.
        if isinstance(request, ssl.SSLSocket):
            with contextlib.suppress(OSError, ValueError):
                request.settimeout(5)
                request.unwrap()
        super().shutdown_request(request)


class _Handler(BaseHTTPRequestHandler):
    cloud: FakeCloud

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def _user(self) -> str | None:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return None
        return user if self.cloud.passwords.get(user) == password else None

    def _deny(self, code: int) -> None:
        self.send_response(code)
        if code == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="bluegrass"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        self.cloud.requests.append(f"{self.command} {parts.path}")
        user = self._user()
        if user is None:
            self._deny(401)
            return
        if parts.path == httpspec.SEGMENTS_PATH and self.command == "GET":
            body = json.dumps({"user": user, "segments": self.cloud.segments(user)}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        prefix = f"{httpspec.GIT_PREFIX}{user}/"
        if not parts.path.startswith(prefix):
            self._deny(404)
            return
        if "receive-pack" in parts.path or "receive-pack" in parts.query:
            self._deny(403)
            return
        self._cgi(user, parts.path[len(httpspec.GIT_PREFIX) - 1 :], parts.query)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return bytes(data)
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _cgi(self, user: str, path_info: str, query: str) -> None:
        body = self._body()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.cloud.repos),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path_info,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": user,
            "REMOTE_ADDR": self.client_address[0],
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.0",
        }
        if self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        proc = subprocess.Popen(
            ["git", "-c", "http.getanyfile=false", "http-backend"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(body)
        proc.stdin.close()
        status, headers = "200 OK", []
        while True:
            line = proc.stdout.readline().rstrip(b"\r\n")
            if not line:
                break
            key, _, value = line.decode("latin-1").partition(":")
            if key.lower() == "status":
                status = value.strip()
            else:
                headers.append((key, value.strip()))
        code, _, reason = status.partition(" ")
        self.send_response(int(code), reason)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Connection", "close")
        self.end_headers()
        sent = 0
        try:
            while chunk := proc.stdout.read1(CHUNK):
                self.wfile.write(chunk)
                sent += len(chunk)
                limit = self.cloud.pause_after
                if limit is not None and sent >= limit and not self.cloud.paused.is_set():
                    self.wfile.flush()
                    self.cloud.paused.set()
                    self.cloud.resume.wait(timeout=120)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            proc.kill()
            proc.wait()
        self.close_connection = True
