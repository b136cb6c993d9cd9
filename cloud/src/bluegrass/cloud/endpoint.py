"""The sync endpoint: `rclone serve sftp` with our auth proxy, as a supervised child process.

Each login runs `authproxy_command()`, a small client of the resident login checker
(bluegrass.cloud.authserver), which `run` starts before the endpoint.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

from bluegrass.cloud import hostkey, tlskey
from bluegrass.core import config, gunicorn, rclone
from bluegrass.core.errors import BluegrassError
from bluegrass.core.supervise import Child, Log

# A directory cache of 100 ms, not rclone's 5 minutes: rclone keeps a separate VFS, with its
# own listing cache, for each device's login, so a write through one laptop's login stays
# invisible to another laptop for that long, and a bisync run in that window overwrites the
# other's edit with no conflict copy (tests/e2e found it with 5 s). No cache at all (0s) is
# pathological in rclone 1.75.2: the server spins at 100% CPU and `rclone sync` of 1,000 files
# did not finish in 120 s, against 1.7 s with 100 ms (measured in this session).
DIR_CACHE_TIME = "100ms"
READY = re.compile(r"SFTP server listening on")
STOP_TIMEOUT = 10.0


def authproxy_command() -> list[str]:
    """What rclone runs for each login: this Python, isolated (-I: no PYTHON* variables, no
    user site, no script folder on sys.path) and without site (-S: no .pth files, no
    site-packages), on the standard-library-only client of the resident login checker."""
    import sys

    from bluegrass.cloud import authclient

    argv = [sys.executable, "-I", "-S", str(Path(authclient.__file__).absolute())]
    # rclone splits --auth-proxy on white space (strings.Fields in cmd/serve/proxy/proxy.go),
    # with no quoting: a path with a space in it cannot be given at all.
    if any(ch.isspace() for ch in "".join(argv)):
        raise BluegrassError(
            f"{' '.join(argv)}: rclone cannot run an auth proxy whose path holds white space; "
            "install Bluegrass under a path without spaces"
        )
    return argv


def command(data_root: Path, bind: str, port: int) -> list[str]:
    return [
        str(rclone.binary()),
        "serve",
        "sftp",
        "--addr",
        config.host_port(bind, port),
        "--key",
        str(hostkey.ensure(data_root)),
        "--auth-proxy",
        " ".join(authproxy_command()),
        "--dir-cache-time",
        DIR_CACHE_TIME,
        # Polling is for remotes that report changes; it must also stay below the cache time.
        "--poll-interval",
        "0",
        # No rclone.conf: the proxy's answer is the whole backend configuration.
        "--config",
        "",
        "--cache-dir",
        str(data_root / "run" / "rclone-cache"),
        "--log-format",
        "",
    ]


def environment(data_root: Path) -> dict[str, str]:
    # RCLONE_* variables would change the server's behaviour behind our back (RCLONE_LINKS
    # turns on symlink translation in the local backend, for one); the per-login client finds
    # the data root, and so the checker's socket, through BLUEGRASS_DATA because rclone
    # splits --auth-proxy on spaces.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RCLONE_")}
    env["BLUEGRASS_DATA"] = str(data_root)
    return env


class Endpoint:
    """One run of the rclone child (a bluegrass.core.supervise.Child): start, wait, stop."""

    name = "sftp"
    ready_pattern = READY

    def __init__(self, data_root: Path, bind: str, port: int, log: Log) -> None:
        self.data_root = data_root
        self.bind = bind
        self.port = port
        self.child = Child(self.name, log, self.ready_pattern.search, STOP_TIMEOUT)

    def argv(self) -> list[str]:
        return command(self.data_root, self.bind, self.port)

    def env(self) -> dict[str, str]:
        return environment(self.data_root)

    def start(self) -> None:
        argv = self.argv()
        (self.data_root / "run").mkdir(exist_ok=True)
        self.child.start(argv, self.env(), self.data_root)

    @property
    def ready(self) -> threading.Event:
        return self.child.ready

    @property
    def last_line(self) -> str:
        return self.child.last_line

    @property
    def started(self) -> float:
        return self.child.started

    @property
    def pid(self) -> int | None:
        return self.child.pid

    def poll(self) -> int | None:
        return self.child.poll()

    def wait_ready(self, timeout: float, stop: threading.Event) -> bool:
        """True once rclone says it listens; False if it exited, or on timeout or stop."""
        return self.child.wait_ready(timeout, stop)

    def stop(self) -> int | None:
        return self.child.stop()


class WebServer(Endpoint):
    """gunicorn serving bluegrass.cloud.webapp (health, segment list, git over HTTP)."""

    name = "http"
    title = "HTTP server"
    ready_pattern = re.compile(r"Listening at: ")

    def argv(self) -> list[str]:
        return gunicorn.argv(
            "bluegrass.cloud.webapp:from_environment()", self.bind, self.port, threads=8
        )

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RCLONE_", "GUNICORN_"))}
        env["BLUEGRASS_DATA"] = str(self.data_root)
        env.pop("BLUEGRASS_DEVICE_PORT", None)
        return env


class DeviceServer(WebServer):
    """The same app over TLS on the device port, with the key that enrollment codes pin
    (bluegrass.cloud.tlskey): where devices send their passwords."""

    name = "https"
    title = "device HTTPS server"

    def argv(self) -> list[str]:
        files = tlskey.ensure(self.data_root)
        return gunicorn.argv(
            "bluegrass.cloud.webapp:from_environment()",
            self.bind,
            self.port,
            threads=8,
            tls=(files.cert, files.key),
        )

    def env(self) -> dict[str, str]:
        # Devices' routes only, and no proxy's forwarded addresses (bluegrass.cloud.webapp).
        return {**super().env(), "BLUEGRASS_DEVICE_PORT": "1"}
