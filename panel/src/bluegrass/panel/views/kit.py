"""The printed recovery kit: the account's own, given only after its password is typed again."""

from __future__ import annotations

from bluegrass.panel.backend import BackendError
from bluegrass.panel.helpers import account, login_required, recovery_kit
from bluegrass.panel.views.auth import throttled_password
from flask import Blueprint, Response, render_template, request

bp = Blueprint("kit", __name__)


@bp.route("/kit", methods=["GET", "POST"])
@login_required
def kit_page() -> Response | tuple[str, int]:
    kits = recovery_kit()
    error = None
    status = 200
    if request.method == "POST":
        # The kit holds the secrets that open this person's replica: a session left open on
        # someone else's screen must not be enough, so the password is asked again, under
        # sign-in's rate limit (a wrong one counts as a failed sign-in).
        checked, error, status = throttled_password(
            account().name, request.form.get("password", "")
        )
        if checked is None:
            error = error or "The password is wrong."
        else:
            try:
                pdf = kits.recovery_kit(account())
            except BackendError as exc:
                error, status = str(exc), 409
            else:
                resp = Response(pdf, mimetype="application/pdf")
                # The account name is a-z, 0-9 and '-': safe in the header as it is.
                name = f"bluegrass-recovery-kit-{account().name}.pdf"
                resp.headers["Content-Disposition"] = f'attachment; filename="{name}"'
                resp.headers["Cache-Control"] = "no-store"
                return resp
    page = render_template("kit.html", kit=kits.kit_state(account()), error=error)
    return page, status
