"""Small pieces the views share: the signed-in account, URLs of real paths, formatting."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from bluegrass.core.names import is_valid
from bluegrass.core.store.browse import PathError, check_path
from bluegrass.core.store.manifest import ROOT
from bluegrass.panel.backend import (
    Account,
    Backend,
    DeviceAdmin,
    Drive,
    EmergencyAccess,
    Mode,
    RecoveryKit,
)
from bluegrass.panel.security import Throttle
from flask import abort, current_app, g, redirect, request, session, url_for

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class PanelState:
    backend: Backend
    mode: Mode
    site_name: str
    throttle: Throttle
    session_idle: timedelta
    session_max_age: timedelta


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


def recovery_kit() -> RecoveryKit:
    """Return the backend as a RecoveryKit. Abort 404 where it makes no kits (the Pi's)."""
    found = backend()
    if not isinstance(found, RecoveryKit):
        abort(404)
    return found


def offers(backend: Backend) -> dict[str, bool]:
    """Given a backend, return which optional parts its pages show (the templates' `offers`)."""
    return {
        "devices": isinstance(backend, DeviceAdmin),
        "drive": isinstance(backend, Drive),
        "kit": isinstance(backend, RecoveryKit),
        "emergency": isinstance(backend, EmergencyAccess),
    }


def load_account() -> Account | None:
    """The session's account, if the sign-in store still has the session open (not signed
    out, not past its idle or absolute limit: decision 126), the account still exists and its
    password has not changed since. A signed cookie alone is not enough: a copy of it outlives
    nothing the server has ended."""
    name = session.get("account")
    token = session.get("sid")
    if not isinstance(name, str) or not isinstance(token, str):
        return None
    limits = state()
    found = backend().session_account(token, limits.session_idle, limits.session_max_age)
    if found is None or found.name != name or session.get("epoch") != found.session_epoch:
        for key in ("account", "epoch", "sid"):
            session.pop(key, None)
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
            return redirect(url_for("auth.login", next=here()))
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


# A local path as every browser reads it: printable ASCII only. Browsers drop tabs and
# newlines anywhere in a URL ("/\t/evil.example" is "//evil.example", another host), trim
# controls and spaces at its ends, and read "\\" as "/"; none of those can be in a match.
_LOCAL_PATH = re.compile(r"/(?![/\\])[!-~]*")


def safe_next(target: str | None) -> str:
    """Given `next` as it came, return it if every browser reads it as a path on this site,
    else the home page: one "/", then anything but a second "/" or "\\", and no scheme, host,
    backslash, space, control or non-ASCII character anywhere (login_required percent-encodes
    the paths it sends here, so the panel's own never fail this)."""
    if target and _LOCAL_PATH.fullmatch(target) and "\\" not in target:
        return target
    return url_for("dashboard.index")


def here() -> str:
    """This request's path and query as sent, percent-encoded: request.full_path is decoded
    (a file name with a space or a newline would come back as one)."""
    raw = request.environ.get("PATH_INFO", "").encode("latin-1")
    path = request.script_root + quote(raw, safe="/!$&'()*+,;=:@-._~")
    query = quote(request.query_string, safe="/?!$&'()*+,;=:@-._~%")
    return path + ("?" + query if query else "")


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
