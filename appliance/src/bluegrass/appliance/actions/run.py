"""`bluegrass-appliance run`: the daemon and its web panel (systemd starts it; SIGTERM stops it
cleanly)."""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import logging
import os
from collections.abc import Iterator

from bluegrass.appliance import daemon, settings
from bluegrass.appliance.context import Appliance
from bluegrass.appliance.panelserver import PanelServer, secret_key
from bluegrass.core import gunicorn
from bluegrass.core.errors import UsageError

log = logging.getLogger("bluegrass.appliance")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run the daemon: watch for the drive, mirror and pull on schedule, serve the panel",
        description="Watch block devices (pyudev) for the backup drive and mount it; mirror "
        "every history (hourly by default) and pull the latest files (every 15 minutes); back "
        "off while the cloud is unreachable; survive the drive being unplugged at any moment; "
        "serve the web panel on the home network (gunicorn, restarted if it dies). Logs to "
        "stderr; state in STATE/state.sqlite (see `status`). SIGTERM stops it cleanly. The "
        "options override [panel] in the settings for this run only.",
    )
    p.add_argument(
        "--panel-bind",
        metavar="ADDR",
        help="the address the panel listens on (default: panel.bind, 0.0.0.0)",
    )
    p.add_argument(
        "--panel-port",
        metavar="PORT",
        help="the panel's port (default: panel.port, 8080); 0 picks a free one (see `status`)",
    )
    p.add_argument(
        "--no-panel", action="store_true", help="do not serve the panel (panel.enabled = false)"
    )
    p.set_defaults(handler=run)


def _port(text: str | None, default: int) -> int:
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"--panel-port: not a port number: {text!r}") from None
    if not settings.is_port(value):
        raise UsageError(f"--panel-port: port {value} is out of range (0-65535)")
    return value


def panel_server(args: argparse.Namespace, app: Appliance) -> PanelServer | None:
    if args.no_panel or not app.config.get("panel.enabled"):
        return None
    bind = args.panel_bind if args.panel_bind is not None else app.config.get("panel.bind")
    if not settings.is_host(bind):
        raise UsageError(f"--panel-bind: not an IP address or host name: {bind!r}")
    port = _port(args.panel_port, app.config.get("panel.port"))
    gunicorn.program()  # missing: fail now, not in a restart loop
    secret_key(app.paths)  # made once here, before gunicorn's workers look for it
    return PanelServer(
        app.paths,
        app.drive_dir,
        bind,
        port,
        lambda line: log.info("%s", line),
        lambda view: app.state.put("panel", view),
    )


@contextlib.contextmanager
def single_daemon(app: Appliance) -> Iterator[None]:
    """One daemon per state folder: a second would fight the first over the drive and port."""
    app.paths.ensure()
    path = app.paths.state / "daemon.lock"
    handle = path.open("a+")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            handle.seek(0)
            holder = handle.read().strip() or "?"
            raise UsageError(
                f"another `bluegrass-appliance run` (pid {holder}) already uses {app.paths.state}"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()


def run(args: argparse.Namespace) -> int:
    app = Appliance.from_args(args)
    panel = panel_server(args, app)
    try:
        app.source()
    except UsageError:
        if panel is None:
            raise  # nothing to do until enrolled: an error now, not an hourly log line
        # The panel's first-run setup takes the enrollment code: serve it and wait.
    with single_daemon(app):
        daemon.setup_logging()
        return daemon.main(app, panel)
