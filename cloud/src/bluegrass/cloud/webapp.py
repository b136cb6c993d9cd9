"""The cloud's HTTP server: one WSGI app, run by gunicorn as a child of `bluegrass-cloud run`.

    GET /health                  200/503 JSON: the web server's, the sync endpoint's, the
                                 daily commits' and the replica's state
    /api/v1/segments, /git/...   read-only git over HTTP for devices, and each live folder's
                                 state for laptops (bluegrass.cloud.githttp)
    /api/v1/quota                the device's user's quota and use (bluegrass.cloud.quota)
    everything else              the web interface: the panel in cloud mode, signed in with
                                 web accounts (bluegrass.cloud.panelbackend)

The same app serves the device port over TLS (`devices_only`, BLUEGRASS_DEVICE_PORT=1 from
bluegrass.cloud.endpoint.DeviceServer) without the web interface, and believes no proxy's
forwarded headers there: devices reach that port directly.

Device logins are decided by the resident login checker, the sync endpoint's
(bluegrass.cloud.authserver): the same checks, log, lock-outs and bound on argon2 checks. A
successful check is remembered briefly per worker, keyed by a hash of the password and the
accounts' credentials revision, so a git fetch's several requests cost one check, and a
revocation takes effect on the next request.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bluegrass.cloud import authclient, quota
from bluegrass.cloud.accounts import Accounts
from bluegrass.cloud.authproxy import WINDOW
from bluegrass.cloud.datadir import STATUS_FILE
from bluegrass.cloud.githttp import GitHTTP, LoginDeferred, StartResponse

if TYPE_CHECKING:
    from bluegrass.cloud.replica.status import ReplicaStatus

WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_REMEMBER = 60.0
# Retry-After, in seconds: a lock-out ends at most a window after the last attempt; a busy
# checker within its queue's wait.
_RETRY_LOCKED = int(WINDOW)
_RETRY_BUSY = 10


class DeviceLogin:
    """Git over HTTP's device check: asks the resident login checker (authserver), so that
    its argon2 checks share the sync endpoint's bound, memory of verified secrets and lock-out
    rules. No checker, no login: it fails closed, and logs why."""

    def __init__(self, data_root: Path) -> None:
        self.data_root = data_root
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def __call__(self, user: str, password: str, client: str) -> bool:
        key = (user, hashlib.sha256(password.encode()).hexdigest())
        with Accounts.open(self.data_root) as accounts:
            revision = accounts.credentials_revision()
        now = time.monotonic()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and seen[1] == revision and now - seen[0] < _REMEMBER:
                return True
        request = authclient.request_from(
            json.dumps({"user": user, "pass": password, "client_ip": client}).encode()
        )
        request["via"] = "http"
        try:
            answer = authclient.ask(str(self.data_root), request)
        except (OSError, ValueError) as exc:
            reason = authclient.no_checker(str(self.data_root), request, "http", exc)
            raise LoginDeferred("503 Service Unavailable", reason, _RETRY_BUSY) from None
        if answer.get("accepted") is not True:
            # Not a 401 unless the credentials themselves were refused (issue 13, finding 3).
            reason = str(answer.get("reason") or "")
            if reason.startswith("rate-limited"):
                raise LoginDeferred("429 Too Many Requests", reason, _RETRY_LOCKED)
            if reason.startswith("busy"):
                raise LoginDeferred("503 Service Unavailable", reason, _RETRY_BUSY)
            return False
        with self._lock:
            self._seen[key] = (now, revision)
        return True


DEVICE_PREFIXES = ("/git/", "/api/")


class CloudApp:
    def __init__(self, data_root: Path, *, devices_only: bool = False) -> None:
        # Imported here: DeviceLogin's users (and this module's importers) need no Flask.
        from bluegrass.cloud import settings
        from bluegrass.cloud.panelbackend import create_panel
        from werkzeug.middleware.proxy_fix import ProxyFix

        self.data_root = data_root.absolute()
        self.git: WSGIApp = GitHTTP(
            self.data_root / "repos",
            DeviceLogin(self.data_root),
            self.data_root / "files",
            quota=self._quota,
            on_failure=self._git_failed,
        )
        if not devices_only and settings.load(self.data_root).get("web.trust_proxy"):
            # Devices behind the same proxy: their login rate limit counts real addresses.
            self.git = ProxyFix(self.git, x_for=1, x_proto=1)  # type: ignore[arg-type]
        self.panel: WSGIApp = _not_found if devices_only else create_panel(self.data_root)

    def _git_failed(self, user: str, segment: str, text: str) -> None:
        """A device's fetch failed in git: if git could not read an object, the repository
        is damaged, and marked so (decision 220)."""
        from bluegrass.cloud import corruption
        from bluegrass.cloud.datadir import DataRoot

        if corruption.looks_damaged(text):
            lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
            found = [f"git upload-pack: {ln}" for ln in lines[-3:]]
            corruption.report_damaged(
                DataRoot(self.data_root), user, segment, found, "the git HTTP serving"
            )

    def __call__(self, environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/health":
            return self._health(start)
        if path.startswith(DEVICE_PREFIXES) or path in ("/git", "/api"):
            return self.git(environ, start)
        return self.panel(environ, start)

    def _quota(self, user: str) -> dict[str, object]:
        """GET /api/v1/quota for an authenticated device of `user` (httpspec)."""
        with Accounts.open(self.data_root) as accounts:
            return quota.for_device(accounts, self.data_root, user).to_json()

    def _health(self, start: StartResponse) -> list[bytes]:
        try:
            status = json.loads((self.data_root / STATUS_FILE).read_text())
        except (OSError, ValueError):
            status = {"sync_endpoint": "unknown"}
        failing = self._stuck_commits()
        status["commits"] = "ok" if failing == 0 else "failing"
        status["commits_failing"] = failing
        replica = self._replica()
        if replica is not None:
            # No reason text: it may name users or the bucket; the dashboard says it.
            status["replica"] = "ok" if replica.ok else "failing"
            status["replica_last_complete"] = replica.last_complete
            status["replica_size"] = replica.size
            status["replica_failing_since"] = replica.failing_since
        replica_ok = replica is None or replica.ok
        ok = status.get("sync_endpoint") == "up" and failing == 0 and replica_ok
        body = json.dumps({"ok": ok, "http": "up", **status}).encode()
        start(
            "200 OK" if ok else "503 Service Unavailable",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
            ],
        )
        return [body]

    def _replica(self) -> ReplicaStatus | None:
        """The replica's state; None when none is configured (or the configuration is
        broken: /health then says nothing of it, the dashboard says what is wrong)."""
        from bluegrass.cloud import settings
        from bluegrass.core.errors import BluegrassError

        try:
            cfg = settings.load(self.data_root)
        except BluegrassError:
            return None
        if not settings.replica_enabled(cfg):
            return None  # before importing the replica's code: /health stays cheap without
        from bluegrass.cloud.replica import status

        return status.read(self.data_root, cfg)

    def _stuck_commits(self) -> int:
        """How many segments' commits fail or are overdue. Only a count: /health answers
        anyone, and user and segment names are for the dashboard (decision 72)."""
        from bluegrass.cloud import settings
        from bluegrass.cloud.commitwatch import stuck_commits
        from bluegrass.cloud.datadir import DataRoot
        from bluegrass.core.config import defaults
        from bluegrass.core.errors import BluegrassError

        try:
            cfg = settings.load(self.data_root)
        except BluegrassError:
            cfg = defaults(settings.SCHEMA)  # a bad edit must not hide failing commits
        with Accounts.open(self.data_root) as accounts:
            return len(stuck_commits(DataRoot(self.data_root), accounts, cfg))


def _not_found(environ: dict[str, Any], start: StartResponse) -> list[bytes]:
    body = b"not found: the web interface is on the HTTP port, not the device port\n"
    start(
        "404 Not Found",
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]


def from_environment() -> CloudApp:
    """gunicorn's entry point: `bluegrass.cloud.webapp:from_environment()`."""
    devices_only = os.environ.get("BLUEGRASS_DEVICE_PORT") == "1"
    return CloudApp(Path(os.environ["BLUEGRASS_DATA"]), devices_only=devices_only)
