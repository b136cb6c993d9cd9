"""The sync endpoint as rclone sees it: one sftp remote, its pinned host key, its password.

rclone.conf (mode 0600, in the configuration folder) holds one remote, `bluegrass`, of type
sftp. A segment's remote path is `bluegrass:<segment>`: the endpoint jails each user in their
own folder. The remote's name never changes, because bisync names its state after the path
strings of both sides.
"""

from __future__ import annotations

from pathlib import Path

from bluegrass.core.enrollment import Enrollment
from bluegrass.core.errors import BluegrassError
from bluegrass.laptop.runner import Rclone
from bluegrass.laptop.settings import write_atomic

REMOTE = "bluegrass"


def remote_path(segment: str) -> str:
    return f"{REMOTE}:{segment}"


def known_hosts_line(host: str, port: int, host_key: str) -> str:
    """The OpenSSH known_hosts form: a bare host for port 22, else [host]:port."""
    where = host if port == 22 else f"[{host}]:{port}"
    return f"{where} {host_key}\n"


def rclone_config_text(enrollment: Enrollment, obscured: str, known_hosts: Path) -> str:
    lines = [
        f"[{REMOTE}]",
        "type = sftp",
        f"host = {enrollment.server}",
        f"port = {enrollment.sftp_port}",
        f"user = {enrollment.user}",
        f"pass = {obscured}",
        f"known_hosts_file = {known_hosts}",
        "shell_type = unix",
        "md5sum_command = md5sum",
        "sha1sum_command = sha1sum",
    ]
    return "\n".join(lines) + "\n"


def obscure(runner: Rclone, secret: str) -> str:
    # Through stdin ("-"), so the password never appears in a process listing.
    proc = runner.run(["obscure", "-"], stdin=secret + "\n")
    text = proc.stdout.strip()
    if proc.returncode != 0 or not text:
        raise BluegrassError(f"rclone obscure failed: {proc.stderr.strip() or proc.returncode}")
    return text


def write_files(
    enrollment: Enrollment, runner: Rclone, config_file: Path, known_hosts: Path
) -> None:
    write_atomic(
        known_hosts,
        known_hosts_line(enrollment.server, enrollment.sftp_port, enrollment.host_key),
        private=True,
    )
    text = rclone_config_text(enrollment, obscure(runner, enrollment.password), known_hosts)
    write_atomic(config_file, text, private=True)


# -- what a failed connection means ---------------------------------------------------------

HOST_KEY = "host-key"
AUTH = "auth"
NETWORK = "network"
OTHER = "other"

_HOST_KEY_SIGNS = ("knownhosts: key mismatch", "knownhosts: key is unknown", "host key mismatch")
_AUTH_SIGNS = ("unable to authenticate", "permission denied")
_NETWORK_SIGNS = (
    "connection refused",
    "no route to host",
    "i/o timeout",
    "network is unreachable",
    "no such host",
    "connection reset",
    "broken pipe",
    "eof",
    "temporary failure in name resolution",
    "host is down",
    "deadline exceeded",
    "handshake failed",
    "connection lost",
)


def connection_problem(text: str) -> str | None:
    """Which kind of connection failure rclone's output describes, if any."""
    low = text.lower()
    if any(s in low for s in _HOST_KEY_SIGNS):
        return HOST_KEY
    if not any(s in low for s in ("couldn't connect ssh", "newfs", "dial tcp", "connection lost")):
        return None
    if any(s in low for s in _AUTH_SIGNS):
        return AUTH
    if any(s in low for s in _NETWORK_SIGNS):
        return NETWORK
    return OTHER


def host_key_message(server: str, port: int) -> str:
    return (
        f"the server at {server}:{port} presented a host key that does not match the one "
        "pinned at enrollment; nothing was transferred. If the server was reinstalled, ask its "
        "administrator for a new enrollment code and run `bluegrass enroll --force CODE`; "
        "otherwise someone may be impersonating it"
    )


# A refused sftp login is not proof of a wrong password: the cloud also refuses logins while a
# device or an address is locked out, or when it is busy. The pinned HTTPS side, asked with the
# same password, tells those apart (bluegrass.laptop.credential).


def auth_refused_message(user: str) -> str:
    """The sftp login and the pinned HTTPS side both refused the password."""
    return (
        f"the server refused this device's password for user {user!r} (the device was "
        "removed, or the password is wrong); ask for a new enrollment code and run "
        "`bluegrass enroll --force CODE`"
    )


def auth_busy_message(user: str) -> str:
    """The sftp login was refused, but the pinned HTTPS side accepted the same password."""
    return (
        f"the server refused this login for user {user!r} although this device's password is "
        "still good (it may be busy, or have locked this device or address out for a while); "
        "the next sync retries"
    )


def auth_unknown_message(user: str, why: str) -> str:
    """The sftp login was refused, and whether the password is still good cannot be told."""
    return (
        f"the server refused this device's login for user {user!r}; it cannot be told whether "
        f"the password is wrong or the server refused for another reason ({why}). The next "
        "sync retries; if this keeps happening, ask for a new enrollment code and run "
        "`bluegrass enroll --force CODE`"
    )
