"""Sessions, CSRF tokens, security headers and the login throttle.

The session is Flask's signed cookie. It holds the account name, the account's session
epoch (a password change ends every other session) and the CSRF token. The cookie is
HttpOnly and SameSite=Lax always, Secure when the request came over HTTPS or the deployment
says it is behind HTTPS (PanelConfig.secure_cookies).

CSRF: one random token per session, rendered into every form as `csrf_token`; every
state-changing request without it (or with another) is refused with 400 before any view runs.
SameSite=Lax already stops most cross-site POSTs; the token covers older browsers and
same-site attackers (another app on the same host name).
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from datetime import UTC, datetime, timedelta

from bluegrass.panel.backend import Backend
from flask import Flask, Request, abort, current_app, request, session
from flask.sessions import SecureCookieSessionInterface
from werkzeug.wrappers import Response

CSRF_FIELD = "csrf_token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# The app's own pages: scripts and styles only from our origin (no inline script at all),
# never framed by anyone, forms only posting back to us. Previews of user files (which may be
# HTML or SVG) set their own, stricter policy with `sandbox` (see views/browse.py).
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-src 'self'; "
    "frame-ancestors 'none'"
)


class PanelSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session with Secure decided per request."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config.get("SESSION_COOKIE_SECURE")) or request.is_secure


def csrf_token() -> str:
    token = session.get(CSRF_FIELD)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[CSRF_FIELD] = token
    return token


def check_csrf(req: Request) -> None:
    if req.method not in UNSAFE_METHODS:
        return
    expected = session.get(CSRF_FIELD)
    given = req.form.get(CSRF_FIELD) or req.headers.get("X-CSRF-Token", "")
    if not isinstance(expected, str) or not hmac.compare_digest(expected, given):
        abort(
            400,
            description="This form has expired or did not come from this page. "
            "Go back, reload the page and try again.",
        )


def security_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", PAGE_CSP)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    headers.setdefault("Cross-Origin-Resource-Policy", "same-origin")
    headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
    # Pages show a person's files: keep them out of shared caches and the back-forward
    # cache of a shared computer. Immutable blobs (previews by commit) set their own.
    headers.setdefault("Cache-Control", "no-store")
    if request.is_secure or current_app.config.get("SESSION_COOKIE_SECURE"):
        headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    return response


class Throttle:
    """Login rate limiting: too many recent failures for an account or from an address.

    The failures are kept by the backend (shared by every worker); this only decides.
    While locked, even the right password is refused, so guessing cannot go on in the
    background; the lock lifts as failures age out of the window.
    """

    def __init__(self, backend: Backend, limit: int, window: timedelta) -> None:
        self.backend = backend
        self.limit = limit
        self.window = window

    def locked_for(self, name: str, ip: str) -> timedelta | None:
        now = datetime.now(UTC)
        failures = self.backend.login_failures(name, ip, now - self.window)
        by_name = sorted(f.at for f in failures if f.name == name)
        by_ip = sorted(f.at for f in failures if f.ip == ip)
        waits = []
        for times in (by_name, by_ip):
            if len(times) >= self.limit:
                # Unlocked once enough failures have aged out to drop below the limit.
                release = times[len(times) - self.limit] + self.window
                waits.append(release - now)
        return max(waits) if waits else None


# C0 and C1 controls and DEL: in a log line, a CR or LF from a file name would forge or
# overwrite lines, an ESC would drive the terminal that shows the log. A backslash is
# escaped too, so that `\x0d` in a log always means the escape, never the name's own text.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\\]")
_CONTROLS_BUT_NEWLINE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def _escape(found: re.Match[str]) -> str:
    char = found.group()
    return "\\\\" if char == "\\" else f"\\x{ord(char):02x}"


def printable(text: str) -> str:
    """Given text for one log line, return it with every control character (and `\\`)
    written as a Python-style escape: the line stays one line, whatever a name holds."""
    return _CONTROLS.sub(_escape, text)


class EscapeControls(logging.Filter):
    """A filter for the panel's logger: messages (Flask's "Exception on <path>" among them,
    with a file's real name in the path) and tracebacks reach the log with their control
    characters escaped. A traceback keeps its own line breaks; anything else is escaped."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = printable(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = _CONTROLS_BUT_NEWLINE.sub(_escape, text)
        return True
