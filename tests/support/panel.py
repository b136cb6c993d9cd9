"""The web panel served for real, for the security tests: gunicorn over each backend, and a
browser reduced to cookies, forms and redirects it does not follow.

Three machines serve the panel (decision 84): the reference backend
(`bluegrass.panel.app:create_app_from_env()`), the cloud (`bluegrass.cloud.webapp`, after
`bluegrass-cloud init`) and the Pi (`bluegrass.appliance.panelbackend`). Each is started as
its own gunicorn with two workers, as the roles run it, on a free loopback port.
"""

from __future__ import annotations

import http.cookiejar
import os
import re
import sqlite3
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

from tests.conftest import VENV_BIN
from tests.support.net import free_port, wait_for_port

PASSWORD = "correct horse battery"
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
KINDS = ("reference", "cloud", "pi")


@dataclass
class Machine:
    """A data root of one kind with alice (an administrator, PASSWORD) made, not served yet."""

    kind: str
    app: str  # gunicorn's "module:factory()"
    env: dict[str, str]
    database: Path  # the SQLite file holding the sign-in store
    log: Path  # gunicorn's output, once served


def make_machine(kind: str, tmp: Path) -> Machine:
    """A fresh data root of `kind` ("reference", "cloud" or "pi") where alice can sign in."""
    tmp.mkdir(parents=True, exist_ok=True)
    log = tmp / f"gunicorn-{kind}.log"
    if kind == "reference":
        from bluegrass.panel.reference import ReferenceBackend

        root = tmp / "ref"
        ReferenceBackend(root).complete_setup("alice", PASSWORD, None)
        env = {"BLUEGRASS_PANEL_DATA": str(root), "BLUEGRASS_PANEL_MODE": "cloud"}
        return Machine(
            kind, "bluegrass.panel.app:create_app_from_env()", env, root / "panel.db", log
        )
    if kind == "cloud":
        data = tmp / "data"
        cloud = [str(VENV_BIN / "bluegrass-cloud"), "--data", str(data)]
        subprocess.run([*cloud, "init"], check=True, capture_output=True)
        subprocess.run([*cloud, "user", "add", "alice"], check=True, capture_output=True)
        subprocess.run(
            [*cloud, "user", "password", "alice", "--password-stdin", "--admin"],
            input=PASSWORD + "\n",
            text=True,
            check=True,
            capture_output=True,
        )
        env = {"BLUEGRASS_DATA": str(data)}
        return Machine(
            kind, "bluegrass.cloud.webapp:from_environment()", env, data / "bluegrass.db", log
        )
    if kind == "pi":
        from bluegrass.appliance import settings
        from bluegrass.appliance.context import Appliance
        from bluegrass.appliance.panelbackend import PiBackend

        paths = settings.Paths(tmp / "state")
        paths.ensure()
        drive = tmp / "drive"
        drive.mkdir()
        PiBackend(Appliance(paths, settings.load(paths), str(drive))).complete_setup(
            "alice", PASSWORD, None
        )
        env = {
            "BLUEGRASS_APPLIANCE_STATE": str(paths.state),
            "BLUEGRASS_APPLIANCE_DRIVE_DIR": str(drive),
        }
        return Machine(
            kind, "bluegrass.appliance.panelbackend:create_app_from_env()", env, paths.database, log
        )
    raise ValueError(kind)


@contextmanager
def served(machine: Machine) -> Iterator[str]:
    """gunicorn (two gthread workers) serving `machine`; yields its base URL."""
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BLUEGRASS_", "GUNICORN_", "RCLONE_"))
    }
    env.update(machine.env)
    with machine.log.open("ab") as log:
        proc = subprocess.Popen(
            [
                str(VENV_BIN / "gunicorn"),
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
                "--worker-class",
                "gthread",
                "--threads",
                "4",
                "--error-logfile",
                "-",
                "--no-control-socket",
                machine.app,
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
        )
        try:
            wait_for_port(port, proc)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def sql(database: Path, statement: str, *params: object) -> None:
    """One statement on a machine's database, as an operator with sqlite3 would run it."""
    db = sqlite3.connect(database, timeout=10, isolation_level=None)
    try:
        db.execute(statement, params)
    finally:
        db.close()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


@dataclass
class Page:
    status: int
    headers: Message
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    @property
    def location(self) -> str:
        return self.headers.get("Location", "")

    def token(self) -> str:
        found = TOKEN.search(self.text)
        assert found, f"no CSRF token in the page:\n{self.text[:2000]}"
        return found.group(1)


class Browser:
    """Cookies and forms; every redirect is returned as it was sent, never followed."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.cookies), _NoRedirect()
        )

    def request(
        self,
        method: str,
        path: str,
        data: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Page:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(self.base + path, data=body, method=method)
        for key, value in (headers or {}).items():
            req.add_header(key, value)
        try:
            with self.opener.open(req, timeout=60) as resp:
                return Page(resp.status, resp.headers, resp.read())
        except urllib.error.HTTPError as err:
            return Page(err.code, err.headers, err.read())

    def get(self, path: str) -> Page:
        return self.request("GET", path)

    def submit(self, path: str, data: dict[str, str], *, form_page: str | None = None) -> Page:
        """POST a form as its page would: with this session's CSRF token."""
        token = self.get(form_page or path).token()
        return self.request("POST", path, {"csrf_token": token, **data})

    def login(self, name: str = "alice", password: str = PASSWORD, query: str = "") -> Page:
        return self.submit("/login" + query, {"name": name, "password": password})

    def cookie_header(self) -> str:
        """The Cookie header this browser sends now: what a thief copies."""
        return "; ".join(f"{c.name}={c.value}" for c in self.cookies)


def replay(base: str, cookie: str, path: str = "/") -> Page:
    """A request from another computer carrying a copied Cookie header, and nothing else."""
    return Browser(base).request("GET", path, headers={"Cookie": cookie})
