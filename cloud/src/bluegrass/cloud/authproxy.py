"""`bluegrass-cloud-authproxy`: decides each login to the sync endpoint.

rclone serve sftp runs this program (its --auth-proxy) once per new login, with JSON on stdin:
{"user", "pass" | "public_key", "client_ip"}. On success we print the backend rclone should
serve to that login, the user's own folder, and exit 0; on failure we exit 1 and rclone
refuses the login. The data root comes from --data or $BLUEGRASS_DATA (`run` sets it).

- The password is "<device>.<secret>" (bluegrass.core.enrollment); the device must belong to
  the user, not be revoked, and its argon2 hash must match. A public key must be registered
  for a live device of that user (the SSH layer then checks the client holds the private key).
- Every decision is one line in DATA/logs/auth.log: time, outcome, user, client address,
  method, device or reason. Never the password.
- Once MAX_FAILURES password logins for one user name, or from one address, have failed
  within WINDOW seconds, every further login of that user or from that address is refused
  unchecked until the window holds fewer. Refusals for that reason do not count themselves,
  so the lock-out ends WINDOW after the last real attempt. Unknown keys are logged but not
  counted: a key is not a guess at a secret, and SSH clients offer every key they hold, one
  call each.
- The served root is DATA/files/<user> with symlinks neither listed nor followed. rclone's
  local backend still walks through a symlinked folder in the middle of a path when writing
  (a link to another user's folder would let writes land there), so a tree that holds a
  symlink to a folder, or a dangling one, is refused until an administrator removes it.
  Symlinks to files are harmless: they are hidden, and an upload replaces the link itself.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bluegrass.cloud import quota
from bluegrass.cloud.accounts import Accounts
from bluegrass.core import enrollment, names

MAX_FAILURES = 5
WINDOW = 600.0
LOG = Path("logs") / "auth.log"
_MAX_INPUT = 65536
_PLAIN = re.compile(r"[A-Za-z0-9._:@/+=-]{1,100}")


@dataclass(frozen=True)
class Decision:
    accepted: bool
    method: str
    reason: str = ""
    device: str = ""
    counts: bool = False  # whether a refusal counts towards the rate limit
    root: Path | None = None
    restricted: int = 0  # at or over their quota: how they are served (cloud.quota)

    def backend(self) -> dict[str, str]:
        assert self.root is not None
        # rclone reads these into a map of strings: every value must be a JSON string.
        served = {
            "type": "local",
            "_root": str(self.root),
            "links": "false",
            "copy_links": "false",
            "skip_links": "true",
            "one_file_system": "true",
        }
        return quota.without_new_bytes(served, self.restricted) if self.restricted else served


def decide(
    data_root: Path, request: dict[str, object], now: float, *, serve_files: bool = True
) -> Decision:
    """Accept or refuse one login; `serve_files` adds the checks for serving the user's tree."""
    user = request.get("user")
    client_ip = str(request.get("client_ip") or "")
    method = "password" if "pass" in request else "key" if "public_key" in request else "none"
    if not isinstance(user, str):
        return Decision(False, method, "no user name", counts=True)
    with Accounts.open(data_root) as accounts:
        by_user, by_ip = accounts.recent_failures(user, client_ip, now - WINDOW)
        if by_user >= MAX_FAILURES or by_ip >= MAX_FAILURES:
            which = "user" if by_user >= MAX_FAILURES else "address"
            return Decision(
                False,
                method,
                f"rate-limited: {max(by_user, by_ip)} failed logins for this {which} "
                f"in the last {int(WINDOW // 60)} minutes",
            )
        decision = _check(accounts, data_root, user, request, method, serve_files)
        if not decision.accepted and decision.counts:
            accounts.record_failure(user, client_ip, decision.reason, now, keep=WINDOW)
    return decision


def _check(
    accounts: Accounts,
    data_root: Path,
    user: str,
    request: dict[str, object],
    method: str,
    serve_files: bool,
) -> Decision:
    if not names.is_valid(user):
        return Decision(False, method, "invalid user name", counts=True)
    if method == "password":
        password = request["pass"]
        parts = enrollment.split_password(password) if isinstance(password, str) else None
        if parts is None:
            return Decision(False, method, "password not of the form DEVICE.SECRET", counts=True)
        device, secret = parts
        why = accounts.check_secret(user, device, secret)
        if why is not None:
            return Decision(False, method, why, device=device, counts=True)
    elif method == "key":
        blob = request["public_key"]
        found, why = accounts.check_key(user, blob) if isinstance(blob, str) else (None, "bad key")
        if found is None:
            return Decision(False, method, why or "key refused")
        device = found
    else:
        return Decision(False, method, "no password or key", counts=True)
    root = data_root / "files" / user
    if not serve_files:
        return Decision(True, method, device=device, root=root)
    problem = _unsafe_tree(root)
    if problem:
        return Decision(False, method, problem, device=device)
    restricted = quota.restricted_at_login(data_root, user)
    note = quota.RESTRICTED.get(restricted, "")  # for the auth log
    return Decision(True, method, note, device=device, root=root, restricted=restricted)


def _unsafe_tree(root: Path) -> str | None:
    """Why the user's folder must not be served, or None if it is safe."""
    if root.is_symlink() or not root.is_dir():
        return f"{root} is missing or not a real folder"
    find = shutil.which("find")
    if find is None:
        return "cannot check the folder for symlinks: find is not installed"
    # -xtype f: the link leads to a regular file. Anything else (a folder, nothing) is refused.
    proc = subprocess.run(
        [find, "-P", str(root), "-type", "l", "!", "-xtype", "f", "-print", "-quit"],
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )
    found = os.fsdecode(proc.stdout.strip())
    if found:
        return f"symlink to a folder or to nothing in the user's files, remove it: {found}"
    if proc.returncode != 0:
        return "cannot check the folder for symlinks: " + os.fsdecode(proc.stderr.strip())[:200]
    return None


def _show(value: str) -> str:
    # User names and addresses come from the network: never let one break a log line.
    return value if _PLAIN.fullmatch(value) else json.dumps(value[:100])


def log_line(decision: Decision, request: dict[str, object], at: float) -> str:
    when = datetime.fromtimestamp(at).astimezone().isoformat(timespec="seconds")
    fields = [
        when,
        "accepted" if decision.accepted else "refused",
        f"user={_show(str(request.get('user', '')))}",
        f"client_ip={_show(str(request.get('client_ip') or '-'))}",
        f"method={decision.method}",
    ]
    if decision.device:
        fields.append(f"device={_show(decision.device)}")
    if decision.reason:
        fields.append(f"reason={json.dumps(decision.reason)}")
    return " ".join(fields) + "\n"


def write_log(data_root: Path, line: str) -> None:
    path = data_root / LOG
    path.parent.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())  # one write of one line: concurrent logins do not interleave
    finally:
        os.close(fd)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bluegrass-cloud-authproxy",
        description="rclone serve sftp's --auth-proxy for Bluegrass: reads a login as JSON on "
        "stdin, prints the user's backend and exits 0, or exits 1 to refuse it.",
    )
    parser.add_argument("--data", metavar="DIR", help="the data root (default: $BLUEGRASS_DATA)")
    args = parser.parse_args(argv)
    chosen = args.data or os.environ.get("BLUEGRASS_DATA")
    if not chosen:
        sys.stderr.write(
            "bluegrass-cloud-authproxy: error: no data root (--data or $BLUEGRASS_DATA)\n"
        )
        return 2
    data_root = Path(chosen).absolute()
    now = time.time()
    try:
        request = json.loads(sys.stdin.read(_MAX_INPUT))
        if not isinstance(request, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        sys.stderr.write(f"bluegrass-cloud-authproxy: refused: unreadable request: {exc}\n")
        return 1
    try:
        decision = decide(data_root, request, now)
    except Exception as exc:  # fail closed, and say why in rclone's log
        sys.stderr.write(f"bluegrass-cloud-authproxy: refused: internal error: {exc}\n")
        return 1
    try:
        write_log(data_root, log_line(decision, request, now))
    except OSError as exc:
        sys.stderr.write(f"bluegrass-cloud-authproxy: cannot write {LOG}: {exc}\n")
    if not decision.accepted:
        sys.stderr.write(f"bluegrass-cloud-authproxy: refused: {decision.reason}\n")
        return 1
    sys.stdout.write(json.dumps(decision.backend()) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
