"""The dashboard (what the backend reports, worst first), jobs with progress, the drive."""

from __future__ import annotations

from bluegrass.core.names import is_valid
from bluegrass.panel.backend import BackendError, NotFound, RecoveryKit
from bluegrass.panel.helpers import account, backend, drive, login_required
from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

bp = Blueprint("dashboard", __name__)


@bp.route("/")
@login_required
def index() -> str:
    board = backend().dashboard(account())
    # Worst first, then by name: a problem should be the first thing one sees.
    board.segments.sort(key=lambda s: (-s.worst, s.user, s.segment))
    board.problems.sort(key=lambda p: -p.severity)
    kits = backend()
    kit = kits.kit_state(account()) if isinstance(kits, RecoveryKit) else None
    return render_template("dashboard.html", board=board, kit=kit)


@bp.route("/jobs", methods=["POST"])
@login_required
def start_job() -> Response:
    kind = request.form.get("kind", "")
    user = request.form.get("user") or None
    segment = request.form.get("segment") or None
    if any(v is not None and not is_valid(v) for v in (user, segment)):
        abort(400)
    try:
        job = backend().start_job(account(), kind, user, segment)
    except NotFound:
        abort(404)
    except BackendError as exc:
        flash(str(exc), "error")
        return redirect(url_for("dashboard.index"))
    return redirect(url_for("dashboard.job_page", job_id=job.id))


@bp.route("/jobs/<job_id>")
@login_required
def job_page(job_id: str) -> str:
    try:
        job = backend().job(account(), job_id)
    except NotFound:
        abort(404)
    return render_template("job.html", job=job)


@bp.route("/jobs/<job_id>.json")
@login_required
def job_json(job_id: str) -> Response:
    try:
        job = backend().job(account(), job_id)
    except NotFound:
        abort(404)
    return jsonify(job.to_json())


@bp.route("/drive/eject", methods=["POST"])
@login_required
def eject() -> Response:
    ejecting = drive()
    try:
        flash(ejecting.eject_drive(account()))
    except BackendError as exc:
        flash(str(exc), "error")
    return redirect(url_for("dashboard.index"))
