"""`make demo`: the whole pipeline on one machine, from a laptop's folder to the Pi's panel.

1. the cloud: a data root, a user `demo` with a web password, `bluegrass-cloud run` on
   loopback (sync endpoint, web port and the devices' TLS port on free ports), in the
   background;
2. a laptop with its own HOME: enrolled with the user's code, a sample folder as the segment
   `documents`, synced;
3. the cloud's daily commit: one dated yesterday, then the laptop changes a few files, syncs,
   and today's commit; then the cloud's replica: an S3 server on loopback (`rclone serve
   s3`, started before the cloud, whose [replica] points at it), `replicate` and `replica
   check`, the bucket's raw objects encrypted;
4. a Raspberry Pi: enrolled with a second device's code, a plain folder standing in for its
   drive, the histories mirrored and the latest files pulled onto it, then
   `bluegrass-appliance run` serving its panel on loopback.

It prints every command line as it runs it, then the panel's and the cloud's addresses with a
freshly generated password for each (printed once, here), and stays up until Ctrl-C, which
stops everything and exits 0.

    BLUEGRASS_DEMO_DIR=DIR   where everything goes (default ./bluegrass-demo, replaced each
                             time); another folder is replaced only if a demo made it
    BLUEGRASS_DEMO_EXIT=1    stop everything and exit once the addresses are printed (tests)
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DEFAULT_FOLDER = ROOT / "bluegrass-demo"  # git ignores it; earlier demos made it unmarked
DEMO = Path(os.environ.get("BLUEGRASS_DEMO_DIR") or DEFAULT_FOLDER).absolute()
MARKER = ".bluegrass-demo"
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 90.0


class StepFailed(Exception):
    pass


def shown(path: Path | str) -> str:
    """A path as a person would type it here: relative when that is shorter."""
    text = str(path)
    with_dot = os.path.relpath(text)
    return with_dot if len(with_dot) < len(text) else text


def free_port() -> int:
    # Another program could take it before our server binds it; on a quiet machine it is fine.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(url: str) -> int | None:
    """The HTTP status of a GET (redirects not followed), None when nothing answers."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    try:
        with urllib.request.build_opener(NoRedirect()).open(url, timeout=5) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as reply:
        return int(reply.code)
    except OSError:
        return None


def write_sample(tree: Path) -> None:
    (tree / "letters").mkdir(parents=True)
    (tree / "letters" / "to-grandma.txt").write_text("Dear Grandma,\nKentucky was lovely.\n")
    (tree / "recipes").mkdir()
    (tree / "recipes" / "burgoo.md").write_text("# Burgoo\n\n- mutton\n- corn\n- okra\n")
    (tree / "photos").mkdir()
    (tree / "photos" / "horse.jpg").write_bytes(os.urandom(200_000))
    (tree / "taxes-2025.pdf").write_bytes(b"%PDF-1.4\n" + os.urandom(50_000))
    (tree / "empty-for-now").mkdir()
    (tree / "latest-letter").symlink_to("letters/to-grandma.txt")
    (tree / "scripts").mkdir()
    (tree / "scripts" / "backup-check.sh").write_text("#!/bin/sh\necho ok\n")
    (tree / "scripts" / "backup-check.sh").chmod(0o755)
    # A project folder whose .gitignore ignores everything: still backed up, byte for byte.
    (tree / "project").mkdir()
    (tree / "project" / ".gitignore").write_text("*\n")
    (tree / "project" / "notes.txt").write_text("ignored by git, not by Bluegrass\n")


def change_sample(tree: Path) -> None:
    (tree / "letters" / "to-grandma.txt").write_text(
        "Dear Grandma,\nKentucky was lovely.\nPS: send pie.\n"
    )
    (tree / "recipes" / "burgoo.md").unlink()
    (tree / "letters" / "to-aunt-may.txt").write_text("Dear May,\nthe horses say hi.\n")


class Demo:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data = folder / "cloud"
        self.home = folder / "laptop"
        self.documents = self.home / "Documents"
        self.pi_state = folder / "pi" / "state"
        self.pi_drive = folder / "pi" / "drive"
        self.s3 = folder / "s3"  # the S3 server's folder: each sub-folder is a bucket
        self.s3_port = 0
        self.logs = folder / "logs"
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []

    # -- running commands -----------------------------------------------------------------

    def laptop_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "RCLONE_"))}
        env.update(
            HOME=str(self.home),
            XDG_CONFIG_HOME=str(self.home / ".config"),
            XDG_STATE_HOME=str(self.home / ".local" / "state"),
        )
        return env

    def cloud_args(self, *args: str) -> list[str]:
        return ["bluegrass-cloud", "--data", str(self.data), *args]

    def pi_args(self, *args: str, drive: bool = True) -> list[str]:
        where = ["--drive-dir", str(self.pi_drive)] if drive else []
        return ["bluegrass-appliance", "--state", str(self.pi_state), *where, *args]

    @staticmethod
    def _argv(args: list[str]) -> list[str]:
        # Our own programs come from this virtual environment, whatever PATH says.
        found = BIN / args[0]
        return [str(found) if found.is_file() else args[0], *args[1:]]

    @staticmethod
    def _line(args: list[str], env_note: str = "") -> str:
        return (
            "$ "
            + env_note
            + " ".join(shlex.quote(shown(a) if a.startswith("/") else a) for a in args)
        )

    def run(
        self,
        args: list[str],
        *,
        env: dict[str, str] | None = None,
        env_note: str = "",
        secret_input: str | None = None,
        quiet: bool = False,
        may_fail: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run one step, showing its command line and output; a failure ends the demo."""
        note = "   (the password on stdin)" if secret_input is not None else ""
        print(self._line(args, env_note) + note, flush=True)
        proc = subprocess.run(
            self._argv(args),
            capture_output=True,
            text=True,
            env=env,
            input=None if secret_input is None else secret_input + "\n",
        )
        if not quiet:
            sys.stdout.write(proc.stdout)
        sys.stdout.write(proc.stderr)
        sys.stdout.flush()
        if proc.returncode != 0 and not may_fail:
            raise StepFailed(f"step failed (exit {proc.returncode}): {' '.join(args[:4])} …")
        return proc

    def start(self, name: str, args: list[str], *, env: dict[str, str] | None = None) -> None:
        """Start a long-running program in the background, in its own process group."""
        log = self.logs / f"{name}.log"
        print(f"{self._line(args)} &   (its log: {shown(log)})", flush=True)
        with log.open("wb") as out:
            proc = subprocess.Popen(
                self._argv(args),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                process_group=0,  # a Ctrl-C reaches the demo only; it stops them in order
            )
        self.children.append((name, proc))

    def wait_until_answers(self, name: str, url: str, expected: int) -> None:
        proc = dict(self.children)[name]
        deadline = time.monotonic() + READY_TIMEOUT
        while answers(url) != expected:
            if proc.poll() is not None:
                raise StepFailed(f"{name} exited ({proc.returncode}); see {self.logs}/{name}.log")
            if time.monotonic() > deadline:
                raise StepFailed(f"{url} did not answer {expected} in {READY_TIMEOUT:g} s")
            time.sleep(0.2)  # polling the address until it answers; the answer decides

    def wait_until_listens(self, name: str, port: int) -> None:
        proc = dict(self.children)[name]
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                pass
            if proc.poll() is not None:
                raise StepFailed(f"{name} exited ({proc.returncode}); see {self.logs}/{name}.log")
            if time.monotonic() > deadline:
                raise StepFailed(f"{name} did not listen on port {port} in {READY_TIMEOUT:g} s")
            time.sleep(0.2)  # polling the port until it takes a connection

    def commit(self, *extra: str) -> None:
        """`bluegrass-cloud commit`. The cloud's own scheduler commits a new segment on its
        next round (every 30 s); should that be this very moment, the segment is busy for a
        moment, and the command is run again."""
        self._again_while_busy("commit", *extra)

    def _again_while_busy(self, *args: str) -> None:
        """A cloud command, run again while `run` does the same thing (a commit of the
        segment, a replicate) and the command says it is busy."""
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            done = self.run(self.cloud_args(*args), may_fail=True)
            if done.returncode == 0:
                return
            if "busy" not in done.stderr and "already running" not in done.stderr:
                raise StepFailed(f"step failed (exit {done.returncode}): bluegrass-cloud {args[0]}")
            if time.monotonic() > deadline:
                raise StepFailed(f"bluegrass-cloud {args[0]} stayed busy")
            print("(busy: the cloud's `run` is doing it right now; once more)")
            time.sleep(0.5)  # polling the lock until `run` lets go

    def stop_all(self) -> None:
        """SIGTERM to each background program's process group, newest first, and wait."""
        for name, proc in reversed(self.children):
            if proc.poll() is None:
                print(f"stopping {name} (pid {proc.pid})", flush=True)
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for name, proc in reversed(self.children):
            try:
                code = proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                print(f"{name} did not stop in {STOP_TIMEOUT:g} s: killing it", flush=True)
                os.killpg(proc.pid, signal.SIGKILL)
                code = proc.wait()
            print(f"{name} stopped (exit {code})", flush=True)
        self.children.clear()

    # -- the story ------------------------------------------------------------------------

    def prepare_folder(self) -> None:
        if self.folder.exists():
            ours = (self.folder / MARKER).exists() or self.folder == DEFAULT_FOLDER
            if any(self.folder.iterdir()) and not ours:
                raise StepFailed(
                    f"{self.folder} exists and was not made by the demo; remove it or set "
                    "BLUEGRASS_DEMO_DIR to another folder"
                )
            if self._still_running():
                raise StepFailed(f"a demo is still running in {self.folder}; stop it first")
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True)
        (self.folder / MARKER).write_text("made by tools/demo.py; replaced by the next demo\n")
        self.logs.mkdir()

    def _still_running(self) -> bool:
        """Whether an earlier demo's Pi still runs there (it holds its daemon lock)."""
        try:
            handle = (self.pi_state / "daemon.lock").open("rb")
        except OSError:
            return False
        with handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
        return False

    def cloud(self) -> tuple[str, int, str]:
        print("\n== 1. The cloud: a data root, a user and a web login", flush=True)
        sftp_port, http_port, device_port = free_port(), free_port(), free_port()
        self.run(self.cloud_args("init"))
        # Enrollment codes carry the address and ports: set them before the first code. The
        # daily commit is put 12 hours away, so the demo's own commits are the ones you see.
        later = (datetime.now() + timedelta(hours=12)).strftime("%H:%M")
        config = self.data / "bluegrass-cloud.toml"
        config.write_text(
            f'[server]\naddress = "127.0.0.1"\nbind = "127.0.0.1"\nsftp_port = {sftp_port}\n'
            f"http_port = {http_port}\ndevice_port = {device_port}\n"
            f'\n[schedule]\ncommit_at = "{later}"\n'
        )
        print(
            f"(wrote {shown(config)}: loopback, ports {sftp_port} (sftp), {http_port} (web) and "
            f"{device_port} (devices, HTTPS with a pinned key))"
        )
        self.replica_server(config)
        added = json.loads(
            self.run(self.cloud_args("user", "add", "demo", "--json"), quiet=True).stdout
        )
        print(f"(user demo added, with a first device, {added['device']}, for the laptop)")
        password = secrets.token_urlsafe(12)
        self.run(
            self.cloud_args("user", "password", "demo", "--admin", "--password-stdin"),
            secret_input=password,
        )
        self.start("cloud", self.cloud_args("run"))
        self.wait_until_answers("cloud", f"http://127.0.0.1:{http_port}/health", 200)
        print(f"(the cloud answers on http://127.0.0.1:{http_port}/health)")
        return str(added["enrollment_code"]), http_port, password

    def replica_server(self, config: Path) -> None:
        """A local S3 server (rclone's own), and the cloud's [replica] pointing at it."""
        key_id, secret = "AKIA" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30)
        (self.s3 / "bluegrass").mkdir(parents=True)  # the bucket, made by its owner
        self.s3_port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("RCLONE_")}
        # Never on a command line. rclone reads a list flag from the environment as CSV: the
        # pair is quoted, or its comma would split it.
        env["RCLONE_AUTH_KEY"] = f'"{key_id},{secret}"'
        self.start(
            "s3",
            [
                "rclone",
                "serve",
                "s3",
                "--addr",
                f"127.0.0.1:{self.s3_port}",
                "--config",
                "",
                str(self.s3),
            ],
            env=env,
        )
        self.wait_until_listens("s3", self.s3_port)
        secret_file = self.data / "s3-secret"
        fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secret + "\n")
        with config.open("a") as out:
            out.write(
                f'\n[replica]\nendpoint = "http://127.0.0.1:{self.s3_port}"\n'
                f'bucket = "bluegrass"\nprovider = "Other"\naccess_key_id = "{key_id}"\n'
                f'secret_access_key_file = "{secret_file}"\n'
            )
        print(
            f"(an S3 server on http://127.0.0.1:{self.s3_port}, bucket bluegrass, its objects "
            f"in {shown(self.s3)}/bluegrass/; [replica] added to {shown(config)})"
        )

    def laptop(self, code: str) -> None:
        print("\n== 2. A laptop: enroll, choose a folder, sync", flush=True)
        write_sample(self.documents)
        print(f"(a sample folder written to {shown(self.documents)})")
        env, note = self.laptop_env(), f"HOME={shown(self.home)} "
        self.run(["bluegrass", "enroll", code], env=env, env_note=note)
        self.run(
            ["bluegrass", "segment", "add", "documents", str(self.documents)],
            env=env,
            env_note=note,
        )
        self.run(["bluegrass", "sync"], env=env, env_note=note)

    def commits(self) -> None:
        print("\n== 3. The cloud's daily commit: yesterday's, then today's", flush=True)
        yesterday = datetime.now().astimezone() - timedelta(days=1)
        self.commit("--date", yesterday.isoformat(timespec="seconds"))
        change_sample(self.documents)
        print("(on the laptop: a letter edited, a recipe deleted, a new letter written)")
        env, note = self.laptop_env(), f"HOME={shown(self.home)} "
        self.run(["bluegrass", "sync"], env=env, env_note=note)
        self.commit()
        self.run(self.cloud_args("log", "demo", "documents"))
        print("\n== 3b. The replica: uploaded encrypted, then checked", flush=True)
        self._again_while_busy("replicate")
        self.run(self.cloud_args("replica", "check"))
        objects = sorted(p for p in (self.s3 / "bluegrass").rglob("*") if p.is_file())
        print(
            f"(the bucket holds {len(objects)} objects; their names and contents are "
            f"encrypted, e.g. {shown(objects[-1].relative_to(self.s3))})"
        )

    def pi(self) -> tuple[int, str]:
        print("\n== 4. A Raspberry Pi: its own device, a drive (a folder here), its panel")
        device = json.loads(
            self.run(
                self.cloud_args("device", "add", "demo", "--name", "pi", "--json"), quiet=True
            ).stdout
        )
        print(f"(a second device, {device['device']}, for the Pi)")
        self.run(self.pi_args("enroll", device["enrollment_code"]))
        self.run(self.pi_args("mirror"))
        self.run(self.pi_args("files"))
        mirror = self.pi_drive / "bluegrass" / "demo" / "documents.git"
        git_env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
        print("(the drive's copy is plain git: no Bluegrass needed to read it)")
        self.run(["git", "--git-dir", str(mirror), "log", "--oneline"], env=git_env)
        password = secrets.token_urlsafe(12)
        self.run(
            self.pi_args("password", "admin", "--password-stdin", drive=False),
            secret_input=password,
        )
        panel_port = free_port()
        self.start(
            "pi",
            self.pi_args("run", "--panel-bind", "127.0.0.1", "--panel-port", str(panel_port)),
        )
        self.wait_until_answers("pi", f"http://127.0.0.1:{panel_port}/login", 200)
        return panel_port, password


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def wait_for_ctrl_c(demo: Demo) -> None:
    """Until SIGINT or SIGTERM; a background program that dies ends the wait too."""
    signals = {signal.SIGINT, signal.SIGTERM}
    # Blocked only now: children started earlier do not inherit the mask.
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        while signal.sigtimedwait(signals, 1.0) is None:
            for name, proc in demo.children:
                if proc.poll() is not None:
                    raise StepFailed(f"{name} exited ({proc.returncode}); see its log")
        print("\nStopping everything.", flush=True)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupted)
    demo = Demo(DEMO)
    try:
        demo.prepare_folder()
        code, http_port, cloud_password = demo.cloud()
        demo.laptop(code)
        demo.commits()
        panel_port, pi_password = demo.pi()
        print("\n== Ready", flush=True)
        print(f"The Pi's panel:   http://127.0.0.1:{panel_port}/")
        print(f"  sign in as admin, password {pi_password}")
        # bluegrass.cloud.webapp serves the panel in cloud mode beside /git and /api.
        print(f"The cloud's site: http://127.0.0.1:{http_port}/")
        print(f"  sign in as demo, password {cloud_password}")
        print("(both passwords were made just now and are shown only here)")
        print(f"The replica:      S3 at http://127.0.0.1:{demo.s3_port}/, bucket bluegrass")
        print(f"Everything is under {shown(demo.folder)}/, logs in {shown(demo.logs)}/.")
        if os.environ.get("BLUEGRASS_DEMO_EXIT") == "1":
            print("BLUEGRASS_DEMO_EXIT=1: stopping now.", flush=True)
        else:
            print("Press Ctrl-C to stop everything.", flush=True)
            wait_for_ctrl_c(demo)
        return 0
    except KeyboardInterrupt:  # during the set-up: stopped before it was ready
        print("\nInterrupted.", flush=True)
        return 130
    except StepFailed as exc:
        print(f"demo: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        demo.stop_all()


if __name__ == "__main__":
    sys.exit(main())
