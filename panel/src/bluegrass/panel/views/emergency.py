"""Emergency access (where the backend has it, the cloud's): trusted people, their requests,
the owner's refusal or end of it, and the log of every step (docs/panel.md).

Reading an owner's history under a grant is the browse views' own business: the backend
makes the owner's segments visible to a grantee with a live grant. This module only notes
such reads, once per sign-in session, in the owner's log.
"""

from __future__ import annotations

import hashlib
import re

from bluegrass.panel.backend import BackendError, EmergencyAccess, NotFound
from bluegrass.panel.helpers import account, backend, login_required
from flask import Blueprint, abort, flash, g, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

bp = Blueprint("emergency", __name__, url_prefix="/emergency")

_DAYS = re.compile(r"[0-9]{1,4}")


def emergency_backend() -> EmergencyAccess:
    """The backend as EmergencyAccess; 404 where it has none (the Pi's, the reference)."""
    found = backend()
    if not isinstance(found, EmergencyAccess):
        abort(404)
    return found


def _page(status: int = 200) -> tuple[str, int]:
    page = emergency_backend().emergency(account())
    return render_template("emergency.html", page=page), status


@bp.route("/")
@login_required
def index() -> tuple[str, int]:
    return _page()


@bp.route("/trusted", methods=["POST"])
@login_required
def add_trusted() -> Response | tuple[str, int]:
    found = emergency_backend()
    name = request.form.get("name", "").strip()
    days = request.form.get("days", "").strip()
    page = found.emergency(account())
    problem = None
    if not name:
        problem = "Name the trusted person: the user name of their account on this server."
    elif not _DAYS.fullmatch(days):
        problem = (
            f"The waiting period is a whole number of days from {page.min_days} to "
            f"{page.max_days}, not {days[:20]!r}."
        )
    if problem is None:
        try:
            found.add_trusted(account(), name[:80], int(days))
        except BackendError as exc:
            problem = str(exc)
    if problem is not None:
        flash(problem, "error")
        return _page(400)
    flash(f"{name} is one of your trusted people, with a {int(days)}-day wait.")
    return redirect(url_for("emergency.index"))


@bp.route("/trusted/<name>/remove", methods=["POST"])
@login_required
def remove_trusted(name: str) -> Response:
    try:
        emergency_backend().remove_trusted(account(), name)
    except NotFound:
        abort(404)
    flash(f"{name} is no longer a trusted person; any access of theirs ended now.")
    return redirect(url_for("emergency.index"))


@bp.route("/trusted/<name>/end", methods=["POST"])
@login_required
def end_access(name: str) -> Response:
    try:
        ended = emergency_backend().end_access(account(), name)
    except NotFound:
        abort(404)
    if ended.state == "refused":
        flash(f"You refused {name}'s request: nothing was granted.")
    else:
        flash(f"{name}'s access ended now.")
    return redirect(url_for("emergency.index"))


@bp.route("/from/<owner>/request", methods=["POST"])
@login_required
def request_access(owner: str) -> Response | tuple[str, int]:
    try:
        req = emergency_backend().request_access(account(), owner)
    except NotFound as exc:
        abort(404, description=str(exc))
    except BackendError as exc:
        flash(str(exc), "error")
        return _page(400)
    if req.state == "granted":
        flash(f"You can read {owner}'s history now.")
    else:
        flash(
            f"Requested. {owner} is told now; unless they refuse, you can read their history "
            f"from {req.grants_at:%Y-%m-%d %H:%M} UTC."
        )
    return redirect(url_for("emergency.index"))


@bp.after_app_request
def note_access(resp: Response) -> Response:
    """A grantee's successful read of another user's segment goes to that owner's log,
    once per sign-in session (keyed by a hash of the session's id, never the id itself)."""
    user = (request.view_args or {}).get("user")
    signed_in = g.get("account")
    if (
        request.blueprint == "browse"
        and isinstance(user, str)
        and signed_in is not None
        and user != signed_in.name
        and resp.status_code < 400
    ):
        found = backend()
        sid = session.get("sid")
        if isinstance(found, EmergencyAccess) and isinstance(sid, str):
            key = hashlib.sha256(b"emergency-access\0" + sid.encode()).hexdigest()[:32]
            found.note_access(signed_in, user, key)
    return resp
