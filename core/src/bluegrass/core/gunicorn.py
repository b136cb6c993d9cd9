"""The command line of gunicorn as the cloud and the Pi run it (each as a supervised child).

Only the command line: the roles depend on gunicorn, core does not import it.
"""

from __future__ import annotations

from pathlib import Path

from bluegrass.core import config, scripts


def program() -> Path:
    return scripts.installed("gunicorn")


def argv(
    app: str,
    bind: str,
    port: int,
    *,
    threads: int,
    timeout: int | None = None,
    tls: tuple[Path, Path] | None = None,
) -> list[str]:
    """gunicorn serving the WSGI `app` ("module:factory()") on bind:port; over TLS with
    `tls` = (certificate, key) PEM files."""
    return [
        str(program()),
        "--bind",
        config.host_port(bind, port),
        # Threads, not sync workers: a download of a big folder or a multi-GB fetch takes
        # minutes, and a sync worker whose one request runs past --timeout is killed.
        "--worker-class",
        "gthread",
        "--workers",
        "2",
        "--threads",
        str(threads),
        *(["--timeout", str(timeout)] if timeout is not None else []),
        "--graceful-timeout",
        "20",
        "--error-logfile",
        "-",
        # gunicorn's control socket defaults to one path per user (~/.gunicorn/): two servers
        # of the same user would fight over it, and nothing here uses it.
        "--no-control-socket",
        *(["--certfile", str(tls[0]), "--keyfile", str(tls[1])] if tls is not None else []),
        app,
    ]
