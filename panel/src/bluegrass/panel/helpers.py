"""Small pieces the views share: the signed-in account, URLs of real paths, formatting."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from bluegrass.core.names import is_valid
from bluegrass.core.store.browse import PathError, check_path
from bluegrass.core.store.manifest import ROOT
from bluegrass.panel.backend import Account, Backend, DeviceAdmin, Drive, Mode
from bluegrass.panel.security import Throttle
from flask import abort, current_app, g, redirect, request, session, url_for

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class PanelState:
    backend: Backend
    mode: Mode
    site_name: str
    throttle: Throttle


def state() -> PanelState:
    return current_app.extensions["bluegrass"]  # type: ignore[no-any-return]


def backend() -> Backend:
    return state().backend


def device_admin() -> DeviceAdmin:
    """Return the backend as a DeviceAdmin. Abort 404 where it has no devices (the Pi's)."""
    found = backend()
    if not isinstance(found, DeviceAdmin):
        abort(404)
    return found


def drive() -> Drive:
    """Return the backend as a Drive. Abort 404 where it has no drive to eject (the cloud's)."""
    found = backend()
    if not isinstance(found, Drive):
        abort(404)
    return found


def offers(backend: Backend) -> dict[str, bool]:
    """Given a backend, return which optional parts its pages show (the templates' `offers`)."""
    return {"devices": isinstance(backend, DeviceAdmin), "drive": isinstance(backend, Drive)}


def load_account() -> Account | None:
    """The session's account, if it still exists and its password has not changed since."""
    name = session.get("account")
    if not isinstance(name, str):
        return None
    found = backend().account(name)
    if found is None or session.get("epoch") != found.session_epoch:
        session.pop("account", None)
        session.pop("epoch", None)
        return None
    return found


def account() -> Account:
    found: Account | None = g.get("account")
    if found is None:
        abort(401)
    return found


def login_required(view: F) -> F:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if backend().needs_setup():
            return redirect(url_for("auth.setup"))
        if g.get("account") is None:
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def admin_required(view: F) -> F:
    @functools.wraps(view)
    @login_required
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not account().admin:
            abort(403)
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def safe_next(target: str | None) -> str:
    """Only a path on this site: "//evil.example" or "https://…" would be an open redirect."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("dashboard.index")


# -- segment paths in URLs ------------------------------------------------------------------


def check_names(user: str, segment: str) -> None:
    if not (is_valid(user) and is_valid(segment)):
        abort(404)


def request_path(skip: int = 5) -> bytes:
    """The real path (bytes) at the end of this request's URL, checked.

    Werkzeug decodes URL paths as UTF-8 with replacement, which would lose a file name that
    is not UTF-8; PATH_INFO holds the raw bytes (as latin-1 text, per WSGI), so the path is
    taken from there: /s/<user>/<segment>/<view>/<path…>.
    """
    raw = request.environ.get("PATH_INFO", "").encode("latin-1")
    parts = raw.split(b"/", skip)
    tail = parts[skip] if len(parts) > skip else b""
    try:
        return check_path(tail)
    except PathError as exc:
        abort(400, description=f"Not a path inside this segment: {exc}.")


def seg_url(view: str, user: str, segment: str, path: bytes = ROOT, **query: Any) -> str:
    tail = b"" if path == ROOT else path
    url = f"{request.script_root}/s/{user}/{segment}/{view}/{quote(tail, safe='/')}"
    given = {k: v for k, v in query.items() if v not in (None, "")}
    return url + ("?" + urlencode(given) if given else "")


def show_name(path: bytes) -> str:
    """A name or path for display (escaped by Jinja like any other text)."""
    return "/" if path == ROOT else path.decode("utf-8", "replace")


def download_name(name: bytes) -> str:
    return os.fsdecode(name).encode("utf-8", "replace").decode("utf-8")


# -- formatting ---------------------------------------------------------------------------


def human_time(when: datetime | int | None) -> str:
    if when is None:
        return "never"
    if isinstance(when, int):  # nanoseconds from a manifest
        when = datetime.fromtimestamp(when / 1e9, UTC)
    return when.astimezone().strftime("%Y-%m-%d %H:%M")


def ago(when: datetime | None) -> str:
    if when is None:
        return "never"
    seconds = (datetime.now(UTC) - when).total_seconds()
    if seconds < 0:
        return "in the future"
    for unit, length in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= length:
            n = int(seconds // length)
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"
