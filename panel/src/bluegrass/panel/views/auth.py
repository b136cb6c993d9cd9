"""First-run setup, sign-in with rate limiting, sign-out, and changing one's password."""

from __future__ import annotations

import math
import secrets
from datetime import timedelta

from bluegrass.core.names import is_valid
from bluegrass.panel.accounts import MIN_PASSWORD
from bluegrass.panel.backend import Account, BackendError
from bluegrass.panel.helpers import account, backend, login_required, safe_next, state
from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

bp = Blueprint("auth", __name__)


def password_problem(password: str, confirm: str) -> str | None:
    if len(password) < MIN_PASSWORD:
        return f"The password needs at least {MIN_PASSWORD} characters."
    if password != confirm:
        return "The two passwords are not the same."
    return None


def start_session(found: Account) -> None:
    # A new session (new CSRF token too) at every sign-in: nothing chosen before signing in,
    # e.g. by someone who planted a cookie, carries over. The session is a row of the sign-in
    # store (decision 126); the cookie only names it.
    end_session()
    limits = state()
    token = backend().open_session(found.name, limits.session_idle, limits.session_max_age)
    session.permanent = True
    session["account"] = found.name
    session["epoch"] = found.session_epoch
    session["sid"] = token
    session["csrf_token"] = secrets.token_urlsafe(32)


def end_session() -> None:
    """End this browser's session in the sign-in store, then forget the cookie's contents."""
    token = session.get("sid")
    if isinstance(token, str):
        backend().end_session(token)
    session.clear()


def throttled_password(name: str, password: str) -> tuple[Account | None, str | None, int]:
    """Check a password with sign-in's rate limit (decision 39): (the account if right,
    else None; the error to show; the status). Every wrong one counts against the name and
    the address, wherever it was typed, so a stolen session cannot guess on /account."""
    ip = request.remote_addr or "unknown"
    locked = state().throttle.locked_for(name, ip)
    if locked is not None:
        return None, locked_message(locked), 429
    found = backend().check_password(name, password)
    if found is None:
        backend().record_login_failure(name, ip)
        return None, None, 401
    backend().clear_login_failures(name)
    return found, None, 200


def locked_message(locked: timedelta) -> str:
    minutes = max(1, math.ceil(locked.total_seconds() / 60))
    return (
        "Too many failed sign-ins for this account or from this address. "
        f"Sign-in is locked; try again in {minutes} minute{'s' if minutes > 1 else ''}."
    )


@bp.route("/setup", methods=["GET", "POST"])
def setup() -> Response | str | tuple[str, int]:
    if not backend().needs_setup():
        return redirect(url_for("auth.login"))
    # Where the panel is reachable by strangers (the cloud), setup also takes a one-time code
    # that only whoever runs the server can see; wrong codes count as failed sign-ins.
    code_required = backend().setup_code_required()
    error = None
    status = 200
    name = request.form.get("name", "admin").strip()
    if request.method == "POST":
        ip = request.remote_addr or "unknown"
        password = request.form.get("password", "")
        code = request.form.get("enrollment_code", "").strip() or None
        locked = state().throttle.locked_for(name, ip) if code_required else None
        if locked is not None:
            error = locked_message(locked)
            status = 429
        elif code_required and not backend().check_setup_code(request.form.get("setup_code", "")):
            backend().record_login_failure(name, ip)
            error = "Wrong setup code. The server's operator can print it (see below)."
            status = 401
        elif not is_valid(name):
            error = "The name may use a-z, 0-9 and '-', up to 63 characters."
        else:
            error = password_problem(password, request.form.get("confirm", ""))
        if error is None:
            try:
                found = backend().complete_setup(
                    name, password, code if state().mode == "pi" else None
                )
            except BackendError as exc:
                error = str(exc)
            else:
                if code_required:
                    backend().clear_login_failures(name)
                start_session(found)
                flash("Setup is complete. You are signed in.")
                return redirect(url_for("dashboard.index"))
        if status == 200:
            status = 400
    page = render_template("setup.html", error=error, name=name, code_required=code_required)
    return page, status


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | str | tuple[str, int]:
    if backend().needs_setup():
        return redirect(url_for("auth.setup"))
    error = None
    status = 200
    name = request.form.get("name", "").strip()
    if request.method == "POST":
        found, error, status = throttled_password(name, request.form.get("password", ""))
        if found is not None:
            start_session(found)
            return redirect(safe_next(request.args.get("next")))
        error = error or "Wrong name or password."
    return render_template("login.html", error=error, name=name), status


@bp.route("/logout", methods=["POST"])
def logout() -> Response:
    end_session()  # every copy of the cookie ends with it, not only this browser's
    flash("You are signed out.")
    return redirect(url_for("auth.login"))


@bp.route("/account", methods=["GET", "POST"])
@login_required
def account_page() -> Response | str | tuple[str, int]:
    error = None
    status = 200
    if request.method == "POST":
        current = request.form.get("current", "")
        checked, error, status = throttled_password(account().name, current)
        if checked is None:
            error = error or "The current password is wrong."
        else:
            status = 400
            password = request.form.get("password", "")
            error = password_problem(password, request.form.get("confirm", ""))
            if error is None:
                try:
                    found = backend().change_password(account(), password)
                except BackendError as exc:
                    error = str(exc)
                else:
                    # The store ended every session of the account, this one too: it starts anew.
                    start_session(found)
                    flash("Your password is changed. Other sessions are signed out.")
                    return redirect(url_for("auth.account_page"))
    if request.method not in ("GET", "POST"):
        abort(405)
    return render_template("account.html", error=error), status if error else 200
