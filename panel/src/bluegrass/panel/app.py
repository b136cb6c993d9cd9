"""The Flask application factory: one app for the Pi's LAN panel and the cloud's web UI."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from bluegrass.panel import helpers, preview, security
from bluegrass.panel.backend import Backend, Mode
from bluegrass.panel.backendkit import human_size
from flask import Flask, Response, g, render_template, request
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import PathConverter


class AnyPath(PathConverter):
    """Werkzeug's `path`, but for every name a store can hold: its regex's `.` stops at a
    newline, so a file whose name has an LF was a 404 on every page of its own."""

    regex = r"[^/][\s\S]*?"


@dataclass
class PanelConfig:
    backend: Backend
    # Signs session cookies; the same value in every gunicorn worker and across restarts.
    secret_key: str
    mode: Mode | None = None  # defaults to backend.mode
    site_name: str = "Bluegrass"
    # Set when served over HTTPS (directly or behind a proxy): cookies get Secure and HSTS
    # is sent even if this process only sees plain HTTP from the proxy.
    secure_cookies: bool = False
    # Trust one proxy's X-Forwarded-For/-Proto (the client's address for login throttling,
    # https for cookies). Only behind a proxy that sets them; otherwise clients could lie.
    trust_proxy: bool = False
    login_limit: int = 5
    login_window: timedelta = timedelta(minutes=10)
    # A session ends after this long unused (the cookie's sliding expiry and the server's
    # record both), and in any case this long after sign-in (decision 126).
    session_lifetime: timedelta = timedelta(hours=12)
    session_max_age: timedelta = timedelta(days=7)
    extra: dict[str, Any] = field(default_factory=dict)


def create_app(config: PanelConfig) -> Flask:
    here = Path(__file__).parent
    app = Flask(
        "bluegrass.panel",
        template_folder=str(here / "templates"),
        static_folder=str(here / "static"),
    )
    app.config.update(
        SECRET_KEY=config.secret_key,
        SESSION_COOKIE_NAME="bluegrass_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.secure_cookies,
        PERMANENT_SESSION_LIFETIME=config.session_lifetime,
        MAX_CONTENT_LENGTH=64 * 1024,  # forms only; nothing is uploaded
        SEND_FILE_MAX_AGE_DEFAULT=3600,
        **config.extra,
    )
    app.session_interface = security.PanelSessionInterface()
    # A file's real name reaches the log in Flask's "Exception on <path>": escaped.
    app.logger.addFilter(security.EscapeControls())
    # Before any route is added: every <path:…> of the views is then an AnyPath.
    app.url_map.converters["path"] = AnyPath
    # "//etc" in a path must reach our path check (and fail there), not be merged silently.
    app.url_map.merge_slashes = False
    if config.trust_proxy:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1)  # type: ignore[method-assign]

    app.extensions["bluegrass"] = helpers.PanelState(
        backend=config.backend,
        mode=config.mode or config.backend.mode,
        site_name=config.site_name,
        throttle=security.Throttle(config.backend, config.login_limit, config.login_window),
        session_idle=config.session_lifetime,
        session_max_age=config.session_max_age,
    )

    offered = helpers.offers(config.backend)

    from bluegrass.panel.views import admin, auth, browse, dashboard, emergency, kit

    app.register_blueprint(auth.bp)
    app.register_blueprint(dashboard.bp)
    app.register_blueprint(browse.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(kit.bp)
    app.register_blueprint(emergency.bp)

    @app.before_request
    def before() -> None:
        security.check_csrf(request)
        g.account = helpers.load_account()

    app.after_request(security.security_headers)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[str, int]:
        return render_template("error.html", error=exc), exc.code or 500

    @app.route("/pygments.css")
    def pygments_css() -> Response:
        resp = Response(preview.stylesheet(), mimetype="text/css")
        resp.headers["Cache-Control"] = "public, max-age=86400"
        return resp

    @app.context_processor
    def globals_() -> dict[str, Any]:
        state = helpers.state()
        return {
            "account": g.get("account"),
            "mode": state.mode,
            "site_name": state.site_name,
            "offers": offered,
        }

    app.jinja_env.filters.update(
        size=human_size,
        when=helpers.human_time,
        ago=helpers.ago,
        show=helpers.show_name,
        base=lambda p: helpers.show_name(p.rsplit(b"/", 1)[-1]),
        iso=lambda d: d.isoformat() if d else "",
    )
    # Globals, not context: imported macros (macros.html) see globals only.
    app.jinja_env.globals.update(csrf_token=security.csrf_token, seg_url=helpers.seg_url)
    return app


def create_app_from_env() -> Flask:
    """For `gunicorn 'bluegrass.panel.app:create_app_from_env()'` with the reference backend.

    BLUEGRASS_PANEL_DATA: the data root; BLUEGRASS_PANEL_MODE: pi or cloud. The cloud and
    the appliance have their own factories that pass their own backends.
    """
    from bluegrass.panel.reference import reference_backend

    root = Path(os.environ["BLUEGRASS_PANEL_DATA"])
    mode: Mode = "pi" if os.environ.get("BLUEGRASS_PANEL_MODE", "cloud") == "pi" else "cloud"
    backend = reference_backend(root, mode)
    return create_app(
        PanelConfig(
            backend=backend,
            secret_key=backend.secret_key(),
            secure_cookies=os.environ.get("BLUEGRASS_PANEL_SECURE", "") == "1",
        )
    )
