"""Read-only git over HTTP: `git http-backend` behind a small WSGI app, plus the segment list
and each live folder's state (what a laptop asks before deciding a sync has nothing to do).

The app streams in both directions (request bodies may be chunked; a multi-GB pack is never
held in memory), runs http-backend with git's configuration isolated, and decides access
itself before git sees the request: HTTP Basic with a device's credentials, only the
user's own repositories, only upload-pack (fetch/clone). The contract is core/httpspec.py.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from bluegrass.core import httpspec, names, syncmeta, treestate
from bluegrass.core.store.git import git_env

Authenticate = Callable[[str, str, str], bool]  # (user, password, client address) -> ok
StartResponse = Callable[..., Any]


class LoginDeferred(Exception):
    """Raised by an `Authenticate` for a login decided on something other than its
    credentials: its address is locked out, or the login checker is busy or down. Answered
    429 or 503 with Retry-After, never 401, which a device takes for a revoked password."""

    def __init__(self, status: str, reason: str, retry_after: int) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after


_GIT_PATH = re.compile(
    r"/git/(?P<user>[a-z0-9][a-z0-9-]{0,62})/(?P<segment>[a-z0-9][a-z0-9-]{0,62})\.git"
    r"(?P<rest>/info/refs|/git-upload-pack)"
)
_STATE_PATH = re.compile(
    re.escape(httpspec.SEGMENTS_PATH)
    + r"/(?P<segment>[a-z0-9][a-z0-9-]{0,62})"
    + re.escape(httpspec.STATE_SUFFIX)
)
CHUNK = 1 << 16


def _plain(
    start: StartResponse, status: str, text: str, extra: list[tuple[str, str]] | None = None
) -> list[bytes]:
    body = (text + "\n").encode()
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    start(status, headers + (extra or []))
    return [body]


def _json(start: StartResponse, data: object) -> list[bytes]:
    body = json.dumps(data).encode()
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
    ]
    start("200 OK", headers)
    return [body]


def _credentials(environ: dict[str, Any]) -> tuple[str, str] | None:
    header = environ.get("HTTP_AUTHORIZATION", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


class GitHTTP:
    """WSGI app serving DATA/repos read-only to authenticated devices."""

    def __init__(
        self,
        repos: Path,
        authenticate: Authenticate,
        files: Path | None = None,
        quota: Callable[[str], object] | None = None,
        on_failure: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self.repos = repos.absolute()
        # (user, segment, git's error text) when a fetch's git fails: the cloud marks a
        # repository whose objects git could not read (corruption.report_damaged).
        self.on_failure = on_failure
        self.quota = quota  # user -> their quota as JSON (httpspec.QUOTA_PATH), if served
        self.files = files.absolute() if files is not None else None
        self.authenticate = authenticate
        # One folder walk at a time per user in this worker: a device asking in a loop keeps
        # one thread busy, not all of them.
        self._walking: dict[str, threading.Lock] = {}
        self._walking_guard = threading.Lock()

    def __call__(self, environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        creds = _credentials(environ)
        client = environ.get("REMOTE_ADDR", "")
        # Every name goes to the check, valid or not, so that every refusal is logged and
        # counted for its source; an invalid one is never accepted there.
        try:
            accepted = (
                creds is not None
                and self.authenticate(creds[0], creds[1], client)
                and names.is_valid(creds[0])
            )
        except LoginDeferred as exc:
            retry = [("Retry-After", str(exc.retry_after))]
            return _plain(start, exc.status, exc.reason, retry)
        if not accepted or creds is None:
            return _plain(
                start,
                "401 Unauthorized",
                "authentication required",
                [("WWW-Authenticate", 'Basic realm="bluegrass", charset="UTF-8"')],
            )
        user = creds[0]
        if path == httpspec.SEGMENTS_PATH and environ.get("REQUEST_METHOD") == "GET":
            return self._segments(user, start)
        if (
            path == httpspec.QUOTA_PATH
            and environ.get("REQUEST_METHOD") == "GET"
            and self.quota is not None
        ):
            with self._walk_lock(user):  # the answer walks the user's files and histories
                return _json(start, self.quota(user))
        state = _STATE_PATH.fullmatch(path)
        if state is not None and environ.get("REQUEST_METHOD") == "GET":
            return self._state(user, state["segment"], start)
        match = _GIT_PATH.fullmatch(path)
        if match is None:
            if path.startswith(httpspec.GIT_PREFIX) and (
                "receive-pack" in path or "receive-pack" in environ.get("QUERY_STRING", "")
            ):
                return _plain(start, "403 Forbidden", "this server is read-only")
            if path.startswith(httpspec.GIT_PREFIX):
                return _plain(start, "403 Forbidden", "only git smart HTTP fetches are served")
            return _plain(start, "404 Not Found", "not found")
        if match["user"] != user:
            return _plain(start, "404 Not Found", "not found")  # never confirm another user's repo
        repo = self.repos / user / f"{match['segment']}.git"
        if not (repo / "HEAD").is_file():
            return _plain(start, "404 Not Found", "not found")
        if (
            match["rest"] == "/info/refs"
            and environ.get("QUERY_STRING") != "service=git-upload-pack"
        ):
            return _plain(start, "403 Forbidden", "this server is read-only")
        segment = match["segment"]
        return self._backend(environ, start, user, f"/{user}/{segment}.git{match['rest']}", segment)

    def _segments(self, user: str, start: StartResponse) -> list[bytes]:
        folder = self.repos / user
        listing = []
        if folder.is_dir():
            for repo in sorted(folder.glob("*.git")):
                segment = repo.name[:-4]
                if not names.is_valid(segment):
                    continue
                ref = repo / "refs" / "heads" / "main"
                head = ref.read_text().strip() if ref.is_file() else _packed_head(repo)
                listing.append(
                    {"name": segment, "git": httpspec.git_path(user, segment), "head": head}
                )
        return _json(start, {"user": user, "segments": listing})

    def _walk_lock(self, user: str) -> threading.Lock:
        with self._walking_guard:
            return self._walking.setdefault(user, threading.Lock())

    def _state(self, user: str, segment: str, start: StartResponse) -> list[bytes]:
        """The live folder's state, from the authenticated user's own folders only (the names
        are checked by the pattern: no `..`, no slash)."""
        if self.files is None:
            return _plain(start, "404 Not Found", "not found")
        folder = self.files / user / segment
        try:
            if folder.is_symlink() or not folder.is_dir():
                return _plain(start, "404 Not Found", "not found")
            with self._walk_lock(user):
                # The check file and the sidecars arrive by rename (rclone's partial uploads).
                found = treestate.walk(folder, renamed_only=syncmeta.is_internal)
        except OSError:
            # A folder being removed, or unreadable: no state, so the laptop syncs in full.
            return _plain(start, "404 Not Found", "not found")
        return _json(start, {"segment": segment, "state": found.to_json()})

    def _backend(
        self,
        environ: dict[str, Any],
        start: StartResponse,
        user: str,
        path_info: str,
        segment: str = "",
    ) -> Iterable[bytes]:
        env = git_env(
            self.repos,
            {
                "GIT_PROJECT_ROOT": str(self.repos),
                "GIT_HTTP_EXPORT_ALL": "1",
                "PATH_INFO": path_info,
                "REQUEST_METHOD": environ.get("REQUEST_METHOD", "GET"),
                "QUERY_STRING": environ.get("QUERY_STRING", ""),
                "CONTENT_TYPE": environ.get("CONTENT_TYPE", ""),
                "REMOTE_ADDR": environ.get("REMOTE_ADDR", ""),
                # Authenticated for our purposes, yet upload-pack only: receive-pack stays off
                # because every repository has http.receivepack=false.
                "REMOTE_USER": user,
            },
        )
        env.pop("GIT_DIR", None)
        for key in ("CONTENT_LENGTH", "HTTP_CONTENT_ENCODING", "HTTP_GIT_PROTOCOL"):
            if environ.get(key):
                env[key] = environ[key]
        if environ.get("HTTP_GIT_PROTOCOL"):
            env["GIT_PROTOCOL"] = environ["HTTP_GIT_PROTOCOL"]
        watch = self.on_failure is not None and bool(segment)
        proc = subprocess.Popen(
            ["git", "http-backend"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if watch else subprocess.DEVNULL,
            env=env,
            cwd=self.repos,
        )
        assert proc.stdin is not None and proc.stdout is not None
        threading.Thread(target=_feed, args=(environ, proc.stdin), daemon=True).start()
        tail = bytearray()
        reader = None
        if watch:
            reader = threading.Thread(target=_keep_tail, args=(proc.stderr, tail), daemon=True)
            reader.start()
        status, headers = _cgi_headers(proc.stdout)
        start(status, headers)

        def finished(code: int) -> None:
            if reader is None or self.on_failure is None:
                return
            reader.join(timeout=5)
            if proc.stderr is not None:
                proc.stderr.close()
            if code != 0 and tail:
                self.on_failure(user, segment, tail.decode("utf-8", "replace"))

        return _stream(proc, finished)


def _packed_head(repo: Path) -> str | None:
    packed = repo / "packed-refs"
    if packed.is_file():
        for line in packed.read_text().splitlines():
            if line.endswith(" refs/heads/main"):
                return line.split()[0]
    return None


def _feed(environ: dict[str, Any], sink: Any) -> None:
    """Copy the request body into http-backend, chunked or not, without holding it whole."""
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    remaining = int(length) if length and length.isdigit() else None
    try:
        while remaining is None or remaining > 0:
            chunk = stream.read(CHUNK if remaining is None else min(CHUNK, remaining))
            if not chunk:
                break
            sink.write(chunk)
            if remaining is not None:
                remaining -= len(chunk)
    except (BrokenPipeError, OSError):
        pass
    finally:
        try:
            sink.close()
        except OSError:
            pass


def _cgi_headers(stdout: Any) -> tuple[str, list[tuple[str, str]]]:
    status = "200 OK"
    headers: list[tuple[str, str]] = []
    while True:
        line = stdout.readline()
        if not line or line in (b"\r\n", b"\n"):
            break
        key, _, value = line.decode("latin-1").rstrip("\r\n").partition(":")
        if key.lower() == "status":
            status = value.strip()
        else:
            headers.append((key.strip(), value.strip()))
    return status, headers


def _keep_tail(stderr: Any, tail: bytearray) -> None:
    """Read git's stderr to its end, keeping the last 8 KiB (its last lines say why)."""
    with contextlib.suppress(OSError, ValueError):
        while chunk := stderr.read(CHUNK):
            tail += chunk
            del tail[:-8192]


def _stream(
    proc: subprocess.Popen[bytes], finished: Callable[[int], None] | None = None
) -> Iterator[bytes]:
    assert proc.stdout is not None
    try:
        while (
            chunk := proc.stdout.read1(CHUNK)
            if hasattr(proc.stdout, "read1")
            else proc.stdout.read(CHUNK)
        ):
            yield chunk
    finally:
        proc.stdout.close()
        if proc.poll() is None:
            proc.terminate()
        code = proc.wait()
        if finished is not None:
            with contextlib.suppress(Exception):  # a report must never break the response
                finished(code)
