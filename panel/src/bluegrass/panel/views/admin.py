"""User administration (admins only): add users, reset passwords, devices, enrollment codes."""

from __future__ import annotations

import re

from bluegrass.core.names import is_valid
from bluegrass.panel.backend import BackendError, Forbidden, NotFound
from bluegrass.panel.helpers import account, admin_required, backend, device_admin
from bluegrass.panel.views.auth import password_problem
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

bp = Blueprint("admin", __name__, url_prefix="/admin")

_DEVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,62}")


def _fail(exc: BackendError) -> None:
    if isinstance(exc, NotFound):
        abort(404)
    if isinstance(exc, Forbidden):
        abort(403)
    flash(str(exc), "error")


@bp.route("/users")
@admin_required
def users() -> str:
    return render_template("users.html", users=backend().users(account()), code=None)


@bp.route("/users", methods=["POST"])
@admin_required
def add_user() -> Response | tuple[str, int]:
    name = request.form.get("name", "").strip()
    password = request.form.get("password", "")
    problem = None if is_valid(name) else "A name is 1-63 characters of a-z, 0-9 and '-'."
    problem = problem or password_problem(password, request.form.get("confirm", ""))
    if problem:
        flash(problem, "error")
        return render_template("users.html", users=backend().users(account()), code=None), 400
    try:
        backend().add_user(account(), name, password, request.form.get("admin") == "on")
        flash(f"User {name} added.")
    except BackendError as exc:
        _fail(exc)
    return redirect(url_for("admin.users"))


@bp.route("/users/<name>/password", methods=["POST"])
@admin_required
def reset_password(name: str) -> Response:
    password = request.form.get("password", "")
    problem = password_problem(password, request.form.get("confirm", ""))
    if problem:
        flash(problem, "error")
        return redirect(url_for("admin.users"))
    try:
        backend().reset_password(account(), name, password)
        flash(f"The password of {name} is reset; their sessions are signed out.")
    except BackendError as exc:
        _fail(exc)
    return redirect(url_for("admin.users"))


@bp.route("/users/<name>/devices/<device>/revoke", methods=["POST"])
@admin_required
def revoke(name: str, device: str) -> Response:
    try:
        device_admin().revoke_device(account(), name, device)
        flash(f"Device {device} of {name} is revoked: it can no longer sync or fetch.")
    except BackendError as exc:
        _fail(exc)
    return redirect(url_for("admin.users"))


@bp.route("/users/<name>/enroll", methods=["POST"])
@admin_required
def enroll(name: str) -> Response | str:
    devices = device_admin()
    device_name = request.form.get("device_name", "").strip() or "new device"
    if not _DEVICE_NAME.fullmatch(device_name):
        flash("A device name is letters, digits, space, '.', '_' or '-'.", "error")
        return redirect(url_for("admin.users"))
    try:
        code = devices.new_enrollment_code(account(), name, device_name)
    except BackendError as exc:
        _fail(exc)
        return redirect(url_for("admin.users"))
    # Shown once, on this response only (never stored in the page's URL or a cookie).
    return render_template(
        "users.html", users=backend().users(account()), code=(name, device_name, code)
    )
