"""Real servers on loopback for the scenarios: the cloud, a throwaway OpenSSH, the panel;
and the laptop client that talks to the cloud.

Each is started as its own process (never in this one), on free loopback ports, with all its
files in a folder of the run; readiness is decided by polling what the server itself answers
(a health page, an accepted connection), never by a fixed sleep. Every `stop` ends only the
process it started (and, for the cloud, what that process supervises).
"""

from __future__ import annotations

import contextlib
import getpass
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from http.cookiejar import CookieJar, MozillaCookieJar
from pathlib import Path
from urllib.parse import urlencode, urlsplit
from urllib.request import HTTPCookieProcessor, OpenerDirector, build_opener

from bench.lib.measure import CommandFailed, run_quiet
from bench.lib.tools import clean_env

Log = Callable[[str], None]
POLL = 0.05  # polling interval while waiting for a server: the server's answer decides


def venv_program(name: str) -> str:
    """A program of the project's venv (bench/run.py runs from it), else from PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise CommandFailed(f"{name} is not installed: run `make setup`")
    return found


def dies_with_us(cmd: list[str]) -> list[str]:
    """`cmd` under `setpriv --pdeathsig TERM` (util-linux) where there is one: should this
    harness be killed outright (a test's timeout), the server it started gets SIGTERM and
    shuts down cleanly instead of running on as an orphan. Servers run in their own session,
    so nothing else would reach them."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--", *cmd] if setpriv else cmd


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def poll_until(
    check: Callable[[], bool],
    what: str,
    timeout: float,
    proc: subprocess.Popen[bytes] | None = None,
    log_file: Path | None = None,
) -> None:
    """Return once `check()` is true; fail naming `what` after `timeout` seconds, or as soon
    as `proc` exits (with the end of its log)."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            raise CommandFailed(
                f"{what}: the process exited {proc.returncode} first{_tail(log_file)}"
            )
        if time.monotonic() > deadline:
            raise CommandFailed(f"{what}: not after {timeout:.0f} s{_tail(log_file)}")
        time.sleep(POLL)


def _tail(log_file: Path | None) -> str:
    if log_file is None or not log_file.exists():
        return ""
    lines = log_file.read_text(errors="replace").strip().splitlines()[-5:]
    return f" (log {log_file}: {' | '.join(lines)})" if lines else f" (log {log_file})"


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """SIGTERM, then SIGKILL to its own process group if it does not exit in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The status of GET url, or None when nothing answers."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    try:
        conn.request("GET", parts.path or "/")
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except OSError:
        return None
    finally:
        conn.close()


class Cloud:
    """`bluegrass-cloud` with its own data root: init, users and devices, `run` on loopback.

    `run` commits every segment once as soon as it finds it not committed for the last
    [schedule] commit_at (a server that was down at 03:00 catches up): a segment folder made
    while it runs would be snapshotted half-uploaded, in the middle of a timed step. So the
    scenarios create their segment folders before `start`, and `settle` waits until the
    scheduler has done that catching up (see the sync scenario's notes).
    """

    def __init__(self, folder: Path, log: Log) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.log_file = folder / "cloud-run.log"
        self.say = log
        self.sftp_port = 0
        self.http_port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str) -> str:
        proc = run_quiet(
            [venv_program("bluegrass-cloud"), "--data", str(self.data), *args], env=clean_env()
        )
        return proc.stdout.decode()

    def command(self, *args: str) -> list[str]:
        return [venv_program("bluegrass-cloud"), "--data", str(self.data), *args]

    def init(self) -> None:
        """A data root whose enrollment codes carry free loopback ports."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.cli("init")
        self.sftp_port, self.http_port = free_port(), free_port()
        # The devices' TLS port too: the default 8443 would be shared with anything else.
        device_port = free_port()
        (self.data / "bluegrass-cloud.toml").write_text(
            "[server]\n"
            'address = "127.0.0.1"\n'
            'bind = "127.0.0.1"\n'
            f"sftp_port = {self.sftp_port}\n"
            f"http_port = {self.http_port}\n"
            f"device_port = {device_port}\n"
        )

    def add_user(self, user: str) -> str:
        """The user's first device's enrollment code."""
        return str(json.loads(self.cli("user", "add", user, "--json"))["enrollment_code"])

    def add_device(self, user: str, name: str) -> str:
        out = self.cli("device", "add", user, "--name", name, "--json")
        return str(json.loads(out)["enrollment_code"])

    def live_tree(self, user: str, segment: str) -> Path:
        return self.data / "files" / user / segment

    def repo(self, user: str, segment: str) -> Path:
        return self.data / "repos" / user / f"{segment}.git"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def git_url(self, user: str, segment: str) -> str:
        return f"{self.base_url}/git/{user}/{segment}.git"

    def start(self, timeout: float = 120) -> None:
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                dies_with_us(self.command("run")),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=clean_env(),
                start_new_session=True,
            )
        # Ready when /health says 200: the web server and the sync endpoint are both up.
        poll_until(
            lambda: http_status(f"{self.base_url}/health") == 200,
            "bluegrass-cloud run answering /health with 200",
            timeout,
            self.proc,
            self.log_file,
        )
        self.say(f"cloud: running (sftp {self.sftp_port}, http {self.http_port})")

    def run_log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def settle(self, segments: list[tuple[str, str]], timeout: float = 1800) -> None:
        """Wait until the scheduler's catching-up commit of each segment is done, and the
        maintain that follows a commit that committed something, so neither can run during
        a timed step."""
        committed = []
        for user, segment in segments:
            key = f"{user}/{segment}"
            # Not the lines of a commit waiting for an upload to end: its outcome comes after.
            pattern = re.compile(rf"commit {re.escape(key)}: (?!waiting|no upload|still)(.*)")
            poll_until(
                lambda p=pattern: p.search(self.run_log()) is not None,
                f"the cloud's first scheduled commit of {key}",
                timeout,
                self.proc,
                self.log_file,
            )
            found = pattern.search(self.run_log())
            outcome = found.group(1) if found else ""
            if outcome.startswith("committed "):
                committed.append(key)
            elif not outcome.startswith("no change"):
                raise CommandFailed(f"the cloud's scheduled commit of {key}: {outcome}")
        for key in committed:
            poll_until(
                lambda k=key: f"maintain {k}: " in self.run_log(),
                f"the cloud's scheduled maintain of {key}",
                timeout,
                self.proc,
                self.log_file,
            )
        self.say(f"cloud: scheduler done with {', '.join(f'{u}/{s}' for u, s in segments)}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


class Sshd:
    """A throwaway OpenSSH server on a free loopback port: its own host key, one client key
    in its own authorized_keys, everything in `folder`; the system's sshd config is unused."""

    PROGRAM = "/usr/sbin/sshd"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_file = folder / "sshd.log"
        self.user = getpass.getuser()

    @classmethod
    def missing(cls) -> list[str]:
        """The Debian packages to install before rsync over OpenSSH can be measured."""
        absent = []
        if not Path(cls.PROGRAM).is_file():
            absent.append("openssh-server")
        if any(shutil.which(n) is None for n in ("ssh", "ssh-keygen")):
            absent.append("openssh-client")
        if shutil.which("rsync") is None:
            absent.append("rsync")
        return absent

    @classmethod
    def version(cls) -> str:
        if not Path(cls.PROGRAM).is_file():
            return "not installed"
        # `sshd -V` prints "OpenSSH_9.2p1 Debian-2, OpenSSL ..." on stderr and exits 0 (9.2+).
        proc = subprocess.run(
            [cls.PROGRAM, "-V"], capture_output=True, text=True, check=False, timeout=30
        )
        text = (proc.stderr or proc.stdout).strip().split(",")[0]
        return text.removeprefix("OpenSSH_") or "?"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        host_key, client_key = self.folder / "host_ed25519", self.folder / "client_ed25519"
        for key in (host_key, client_key):
            if not key.exists():
                run_quiet(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)])
        (self.folder / "authorized_keys").write_text(
            Path(f"{client_key}.pub").read_text(), encoding="ascii"
        )
        self.port = free_port()
        config = self.folder / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {host_key}",
                    f"AuthorizedKeysFile {self.folder / 'authorized_keys'}",
                    f"PidFile {self.folder / 'sshd.pid'}",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin prohibit-password",
                    "UsePAM no",
                    # The temp dir's owner and modes are not what sshd's checks expect.
                    "StrictModes no",
                    f"AllowUsers {self.user}",
                    "Subsystem sftp internal-sftp",
                    "",
                ]
            )
        )
        if os.geteuid() == 0:
            # sshd started as root insists on its privilege-separation folder (Debian's
            # service creates it at boot; a throwaway server has to).
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        (self.folder / "known_hosts").write_text(
            f"[127.0.0.1]:{self.port} " + " ".join(Path(f"{host_key}.pub").read_text().split()[:2])
        )
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                dies_with_us([self.PROGRAM, "-D", "-e", "-f", str(config)]),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        poll_until(
            lambda: port_open(self.port),
            f"sshd listening on 127.0.0.1:{self.port}",
            30,
            self.proc,
            self.log_file,
        )
        # A real login, so a refused key or a broken config fails here and not in a timed step.
        run_quiet([*self.ssh_argv(), f"{self.user}@127.0.0.1", "true"])

    def ssh_argv(self) -> list[str]:
        return [
            "ssh",
            "-F",
            "none",
            "-p",
            str(self.port),
            "-i",
            str(self.folder / "client_ed25519"),
            "-o",
            f"UserKnownHostsFile={self.folder / 'known_hosts'}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
        ]

    def rsync_shell(self) -> str:
        """The -e argument for rsync: one string, which rsync splits on spaces itself (no
        path here contains one: the scenario checks)."""
        argv = self.ssh_argv()
        if any(" " in a for a in argv):
            raise CommandFailed(f"a path of the ssh command has a space, rsync -e cannot: {argv}")
        return " ".join(argv)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=20)
            self.proc = None


PANEL_PASSWORD = "bench-password-0123456789"


class Panel:
    """The panel with its reference backend under gunicorn, as tests/panel/server.py runs
    it (2 gthread workers, 4 threads each), and a signed-in client."""

    def __init__(self, data: Path, log_file: Path) -> None:
        self.data = data
        self.log_file = log_file
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.cookies = CookieJar()
        self.browser: OpenerDirector = build_opener(HTTPCookieProcessor(self.cookies))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, workers: int = 2, threads: int = 4) -> None:
        self.port = free_port()
        env = clean_env(BLUEGRASS_PANEL_DATA=str(self.data), BLUEGRASS_PANEL_MODE="cloud")
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                dies_with_us(
                    [
                        venv_program("gunicorn"),
                        "--bind",
                        f"127.0.0.1:{self.port}",
                        "--workers",
                        str(workers),
                        "--worker-class",
                        "gthread",
                        "--threads",
                        str(threads),
                        # gunicorn's control socket is one path per user (~/.gunicorn): two
                        # servers would fight over it.
                        "--no-control-socket",
                        "bluegrass.panel.app:create_app_from_env()",
                    ]
                ),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                start_new_session=True,
            )
        # Listening is not enough: the workers must be up and the app loaded.
        poll_until(
            lambda: http_status(f"{self.base_url}/login") in (200, 302),
            "the panel answering /login",
            60,
            self.proc,
            self.log_file,
        )

    def sign_in(self, name: str) -> None:
        """First-run setup (making `name` the administrator) or, once done, a sign-in."""
        page = self.browser.open(self.base_url + "/")
        form = {"csrf_token": _form_token(page.read().decode())}
        if page.url.endswith("/setup"):
            form |= {"name": name, "password": PANEL_PASSWORD, "confirm": PANEL_PASSWORD}
            target = "/setup"
        else:
            form |= {"name": name, "password": PANEL_PASSWORD}
            target = "/login"
        done = self.browser.open(self.base_url + target, data=urlencode(form).encode())
        if done.url != self.base_url + "/":
            raise CommandFailed(f"signing in to the panel as {name} failed (ended at {done.url})")

    def cookie_header(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.cookies)

    def cookie_file(self, path: Path) -> Path:
        """The session cookie in a Netscape cookie file (for curl -b)."""
        jar = MozillaCookieJar(str(path))
        for cookie in self.cookies:
            jar.set_cookie(cookie)
        jar.save(ignore_discard=True, ignore_expires=True)
        return path

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=30)
            self.proc = None


def _form_token(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    if not found:
        raise CommandFailed("the panel's page has no CSRF token")
    return found.group(1)


class Laptop:
    """One computer running the real `bluegrass`, with its own HOME, configuration and state
    folders (nothing of the caller's XDG_, RCLONE_ or BLUEGRASS_ variables)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.config_dir = home / ".config" / "bluegrass"
        self.state_dir = home / ".local" / "state" / "bluegrass"
        env = {k: v for k, v in clean_env().items() if not k.startswith(("XDG_", "RCLONE_"))}
        env.update(
            HOME=str(home),
            XDG_CONFIG_HOME=str(home / ".config"),
            XDG_STATE_HOME=str(home / ".local" / "state"),
            XDG_CACHE_HOME=str(home / ".cache"),
        )
        self.env = env

    def command(self, *args: str) -> list[str]:
        return [venv_program("bluegrass"), *args]

    def run(self, *args: str) -> str:
        return run_quiet(self.command(*args), env=self.env, cwd=self.home).stdout.decode()

    @property
    def rclone_config(self) -> Path:
        """What `enroll` wrote: the remote `bluegrass` with this device's credentials."""
        return self.config_dir / "rclone.conf"
