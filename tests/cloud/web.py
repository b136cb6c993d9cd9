"""A person's browser, reduced to what the cloud's web tests need: cookies, forms, no redirects.

Talks HTTP to a real `bluegrass-cloud run` (tests.cloud.server.Server) with the standard
library only, and never follows a redirect by itself, so tests see every 302 and 404 as sent.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import Message
from pathlib import Path

from tests.cloud.server import Server
from tests.conftest import VENV_BIN, require_tool
from tests.support.net import free_port

Run = Callable[..., subprocess.CompletedProcess[str]]
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


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
    def __init__(self, base: str, *, address: str | None = None) -> None:
        self.base = base
        self.address = address  # sent as X-Forwarded-For (only trusted with [web] trust_proxy)
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.cookies), _NoRedirect()
        )

    def request(self, method: str, path: str, data: dict[str, str] | None = None) -> Page:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(self.base + path, data=body, method=method)
        if self.address:
            req.add_header("X-Forwarded-For", self.address)
        try:
            with self.opener.open(req, timeout=60) as resp:
                return Page(resp.status, resp.headers, resp.read())
        except urllib.error.HTTPError as err:
            return Page(err.code, err.headers, err.read())

    def get(self, path: str) -> Page:
        return self.request("GET", path)

    def post(self, path: str, data: dict[str, str]) -> Page:
        return self.request("POST", path, data)

    def token(self, path: str = "/login") -> str:
        return self.get(path).token()

    def submit(self, path: str, data: dict[str, str], *, form_page: str | None = None) -> Page:
        """POST a form as the page would: with this session's CSRF token."""
        return self.post(path, {"csrf_token": self.token(form_page or path), **data})

    def login(self, name: str, password: str) -> Page:
        return self.submit("/login", {"name": name, "password": password})


def cli(data: Path) -> Run:
    """The real `bluegrass-cloud` command line on the data root `data`; `input` goes to stdin."""

    def run(
        *args: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(VENV_BIN / "bluegrass-cloud"), "--data", str(data), *args],
            capture_output=True,
            text=True,
            input=input,
            env=dict(os.environ),
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"bluegrass-cloud {' '.join(args)} failed: {proc.stderr}")
        return proc

    return run


def set_password(cloud: Run, user: str, password: str, *extra: str) -> None:
    """`user password USER --password-stdin`: how an administrator sets a web login."""
    cloud("user", "password", user, "--password-stdin", *extra, input=password + "\n")


def write(path: Path, data: bytes | str, days_ago: float | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    if days_ago is not None:
        stamp = (datetime.now() - timedelta(days=days_ago)).timestamp()
        os.utime(path, (stamp, stamp))


def commit(cloud: Run, user: str, segment: str, days_ago: float) -> str:
    """`commit --date` so many days ago: a snapshot "as of last week" for browsing."""
    when = (datetime.now() - timedelta(days=days_ago)).astimezone().isoformat(timespec="seconds")
    out = json.loads(
        cloud("commit", "--user", user, "--segment", segment, "--date", when, "--json").stdout
    )
    [result] = out["segments"]
    assert result["committed"], result
    return str(result["commit"])


def configured(data: Path, tmp: Path, extra: str = "") -> Server:
    """A `run` on free ports, not started yet: the configuration names its ports (enrollment
    codes made from now on carry them) and puts the daily commit 12 hours off."""
    for tool in ("git", "ssh-keygen", "find"):
        require_tool(tool)
    server = Server(data, tmp, free_port(), free_port())
    far = (datetime.now() + timedelta(hours=12)).strftime("%H:%M")
    (data / "bluegrass-cloud.toml").write_text(
        f'[server]\naddress = "127.0.0.1"\nsftp_port = {server.sftp_port}\n'
        f"http_port = {server.http_port}\ndevice_port = {server.device_port}\n"
        f'\n[schedule]\ncommit_at = "{far}"\n{extra}'
    )
    return server


def started(server: Server, segments: list[str]) -> Server:
    """Start it and wait until the scheduler's first round has found nothing to commit in
    `segments` (commit them all before): from then on every snapshot is the test's own."""
    server.start()
    for name in segments:
        server.wait_log(f"commit {name}: no change")
    return server


def start(data: Path, tmp: Path, segments: list[str], extra: str = "") -> Server:
    return started(configured(data, tmp, extra), segments)
