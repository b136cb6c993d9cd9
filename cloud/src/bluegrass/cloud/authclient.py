"""The program rclone runs for each sync endpoint login, and the auth log's one format.

`rclone serve sftp --auth-proxy` starts a process per login attempt, unbounded. So this is
only a small client of the resident login checker (bluegrass.cloud.authserver, started by
`bluegrass-cloud run`): it reads rclone's JSON from stdin, shortens what an attacker can make
long, asks the checker over DATA/run/auth.sock, and prints the checker's backend (exit 0) or
refuses (exit 1). With no checker, or no answer, it refuses and logs why: it fails closed.

It imports only the standard library's json, os, socket, sys and time, so that it starts in
a few milliseconds and ~10 MB, against ~31 MB for a Python that loads the accounts code, and
`run` starts it as `python -I -S this-file` (decision 121). The checker and git over HTTP use
the same functions, so the auth log has one format: one JSON object a line (decision 122).
"""

# pathlib would pull urllib.parse, fnmatch and more into every login: os.path it is.
# ruff: noqa: PTH100, PTH103, PTH118, PTH119, PTH120

import json
import os
import socket
import sys
import time

SOCKET = os.path.join("run", "auth.sock")
LOG = os.path.join("logs", "auth.log")
MAX_INPUT = 4 << 20  # rclone's JSON; an SSH packet is at most 256 KiB, escaped up to 6 times
MAX_USER = 256  # longer than any valid name (63); the checker sees the length
MAX_PASS = 1024  # DEVICE.SECRET is about 52 characters
MAX_KEY = 16384  # a 16384-bit RSA key is under 3 KB in base64
MAX_REPLY = 1 << 20
LOG_USER = 100  # characters of a user name that reach the log
TIMEOUT = 30.0  # the checker answers within its own queue wait (10 s) or refuses
CONNECT_WAIT = 5.0  # for room in the checker's listen queue


def shorten(value: object, limit: int) -> str:
    text = value if isinstance(value, str) else "" if value is None else str(value)
    return text[:limit]


def request_from(raw: bytes) -> dict[str, object]:
    """What to ask the checker: rclone's fields, each cut to a length it can be checked at."""
    try:
        given = json.loads(raw[:MAX_INPUT].decode("utf-8", "replace"))
        if not isinstance(given, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        # Still say where it came from: rclone writes its keys sorted, client_ip first.
        head = raw[:300].decode("ascii", "replace")
        at = head.find('"client_ip": "')
        ip = head[at + 14 :].split('"', 1)[0] if at >= 0 else ""
        reason = "too long" if len(raw) > MAX_INPUT else str(exc)[:100]
        return {"unreadable": f"unreadable request: {reason}", "client_ip": ip[:64]}
    user = given.get("user")
    request: dict[str, object] = {
        "user": shorten(user, MAX_USER),
        "user_length": len(user) if isinstance(user, str) else 0,
        "client_ip": shorten(given.get("client_ip"), 64),
    }
    if "pass" in given:
        password = shorten(given["pass"], MAX_PASS + 1)
        # Too long to be a device's password: refused as such, never truncated into one.
        request["pass"] = password if len(password) <= MAX_PASS else ""
    elif "public_key" in given:
        key = shorten(given["public_key"], MAX_KEY + 1)
        request["public_key"] = key if len(key) <= MAX_KEY else ""
    return request


def log_entry(
    outcome: str, request: dict[str, object], via: str, at: float, **fields: str
) -> dict[str, object]:
    """One auth log record. User-supplied values are shortened here and escaped by JSON."""
    user = shorten(request.get("user"), LOG_USER)
    entry: dict[str, object] = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(at)),
        "at": round(at, 3),
        "outcome": outcome,
        "user": user,
    }
    length = request.get("user_length")
    if isinstance(length, int) and length > len(user):
        entry["user_length"] = length
    entry["client_ip"] = shorten(request.get("client_ip"), 64)
    entry["via"] = via
    entry.update({k: v for k, v in fields.items() if v})
    return entry


def append_log(data_root: str, entry: dict[str, object]) -> None:
    # ensure_ascii: every control character and non-ASCII letter becomes a \u escape, so a
    # value can never start a line of its own or move a terminal's cursor.
    line = json.dumps(entry, ensure_ascii=True, separators=(",", ":")) + "\n"
    folder = os.path.join(data_root, "logs")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(data_root, LOG), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())  # one write of one line: concurrent logins do not interleave
    finally:
        os.close(fd)


def connect(conn: socket.socket, data_root: str) -> None:
    """Connect to the checker's socket; AF_UNIX paths stop at 107 bytes, so a long one is
    reached as /proc/self/fd/N/auth.sock, through a descriptor of its folder."""
    path = os.path.join(data_root, SOCKET)
    if len(os.fsencode(path)) < 100:
        conn.connect(path)
        return
    fd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        conn.connect(f"/proc/self/fd/{fd}/{os.path.basename(path)}")
    finally:
        os.close(fd)


def _connected(data_root: str, timeout: float) -> socket.socket:
    # A full listen queue fails a Unix socket's connect() at once (EAGAIN) rather than
    # waiting: try again, on a fresh socket, for a while, then give up as busy.
    deadline = time.monotonic() + CONNECT_WAIT
    while True:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(timeout)
        try:
            connect(conn, data_root)
            return conn
        except BlockingIOError:
            conn.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
        except BaseException:
            conn.close()
            raise


def ask(data_root: str, request: dict[str, object], timeout: float = TIMEOUT) -> dict[str, object]:
    """The checker's answer; OSError or ValueError when there is none."""
    with _connected(data_root, timeout) as conn:
        conn.sendall(json.dumps(request).encode() + b"\n")
        reply = b""
        while not reply.endswith(b"\n") and len(reply) < MAX_REPLY:
            chunk = conn.recv(65536)
            if not chunk:
                break
            reply += chunk
    answer = json.loads(reply)
    if not isinstance(answer, dict):
        raise ValueError("the checker's answer is not a JSON object")
    return answer


def no_checker(data_root: str, request: dict[str, object], via: str, exc: Exception) -> str:
    """Log a login refused because the checker did not answer; the reason."""
    if isinstance(exc, BlockingIOError):
        reason = f"busy: the login checker's queue stayed full for {CONNECT_WAIT:g} s"
    else:
        gone = isinstance(exc, (FileNotFoundError, ConnectionRefusedError))
        why = "the login checker is not running" if gone else "the login checker did not answer"
        reason = f"{why} ({type(exc).__name__}); is `bluegrass-cloud run` up?"
    try:
        append_log(data_root, log_entry("refused", request, via, time.time(), reason=reason))
    except OSError:
        pass  # the refusal still reaches rclone's log through stderr
    return reason


def _escaped(text: str) -> str:
    # rclone quotes our stderr, but keep it one printable line for anyone reading it raw.
    return json.dumps(text)[1:-1]


def main() -> int:
    data_root = os.environ.get("BLUEGRASS_DATA", "")
    if len(sys.argv) == 3 and sys.argv[1] == "--data":
        data_root = sys.argv[2]
    if not data_root:
        sys.stderr.write("bluegrass-cloud-authproxy: error: no data root ($BLUEGRASS_DATA)\n")
        return 2
    data_root = os.path.abspath(data_root)
    request = request_from(sys.stdin.buffer.read(MAX_INPUT + 1))
    request["via"] = "sftp"
    try:
        answer = ask(data_root, request)
    except (OSError, ValueError) as exc:
        reason = no_checker(data_root, request, "sftp", exc)
        sys.stderr.write(f"bluegrass-cloud-authproxy: refused: {_escaped(reason)}\n")
        return 1
    backend = answer.get("backend")
    if answer.get("accepted") is True and isinstance(backend, dict):
        sys.stdout.write(json.dumps(backend) + "\n")
        return 0
    reason = shorten(answer.get("reason"), 300) or "refused"
    sys.stderr.write(f"bluegrass-cloud-authproxy: refused: {_escaped(reason)}\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
