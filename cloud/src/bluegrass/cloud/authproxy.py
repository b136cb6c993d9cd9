"""Deciding each device login, for the sync endpoint and for git over HTTP.

`decide()` is the whole decision; the resident login checker (bluegrass.cloud.authserver,
started by `bluegrass-cloud run`) calls it for every login, of rclone serve sftp's per-login
program (bluegrass.cloud.authclient) and of git over HTTP alike. On success the sftp login is
served `Decision.backend()`, the user's own folder.

- The password is "<device>.<secret>" (bluegrass.core.enrollment); the device must belong to
  the user, not be revoked, and its argon2 hash must match. A public key must be registered
  for a live device of that user (the SSH layer then checks the client holds the private key).
- Every decision is one JSON line in DATA/logs/auth.log (bluegrass.cloud.authclient.log_entry):
  time, outcome, user, client address, method, device or reason. Never the password.
- Failures are counted per source (an address, or an IPv6 /64) and per device id, never per
  user name, which anyone can know (decision 120). A source with MAX_FAILURES failures within
  WINDOW seconds is locked, and so is a device id with as many for a source that has failed at
  least once. A locked login gets no argon2 check: it passes only with a secret this checker
  verified before for that live device (`Verified`), else it is refused and not counted, so
  the lock ends WINDOW after the last real attempt. Keys are always checked: a key check costs
  no argon2, a key is not a guess at a secret, and SSH clients offer every key they hold.
- argon2 checks run through a `Gate`: a few at a time, a few more waiting, the rest refused
  as "busy" and not counted (decision 121).
- The served root is DATA/files/<user> with symlinks neither listed nor followed. rclone's
  local backend still walks through a symlinked folder in the middle of a path when writing
  (a link to another user's folder would let writes land there), so a tree that holds a
  symlink to a folder, or a dangling one, is refused until an administrator removes it.
  Symlinks to files are harmless: they are hidden, and an upload replaces the link itself.

`python -m bluegrass.cloud.authproxy` is the old in-process proxy, one Python with all of
this per login and no bound: kept only so that `make bench` can compare the two.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path

from bluegrass.cloud import authclient, quota
from bluegrass.cloud.accounts import Accounts
from bluegrass.cloud.credentials import REVOKED
from bluegrass.core import enrollment, names

MAX_FAILURES = 5
WINDOW = 600.0
LOG = Path(authclient.LOG)


class Busy(Exception):
    """No argon2 check could start in time: the login is refused, not counted."""


class Gate:
    """At most `slots` argon2 checks at a time, on `slots` threads of its own, and `waiting`
    more queued, each for at most `wait` seconds; anything beyond is refused at once. A check
    takes 19 MiB and ~70 ms of a core: a burst of logins cannot take the server's memory or
    CPU. Own threads, not the callers': glibc keeps a freed 19 MiB block in the arena of the
    thread that used it, and 40 connection threads held 180 MB that way."""

    def __init__(self, slots: int = 2, waiting: int = 8, wait: float = 10.0) -> None:
        self.slots = slots
        self.waiting = waiting
        self.wait = wait
        self._pool = ThreadPoolExecutor(slots, thread_name_prefix="argon2")
        self._lock = threading.Lock()
        self._pending = 0

    @property
    def pending(self) -> int:
        """Checks running or waiting now."""
        with self._lock:
            return self._pending

    def _done(self, _future: Future[bool]) -> None:
        with self._lock:
            self._pending -= 1

    def run(self, check: Callable[[], bool]) -> bool:
        with self._lock:
            if self._pending >= self.slots + self.waiting:
                raise Busy(f"busy: {self.slots} checks running and {self.waiting} waiting")
            self._pending += 1
        future = self._pool.submit(check)
        future.add_done_callback(self._done)
        try:
            return future.result(timeout=self.wait)
        except FutureTimeout:
            if future.cancel():
                raise Busy(f"busy: no check could start within {self.wait:g} s") from None
            return future.result()  # started just now: it ends within a check's time


class Verified:
    """Secrets this process has verified, as SHA-256 digests by (user, device), in memory only.

    A device's secret is 256 random bits, so its plain digest is as hard to reverse as its
    argon2 hash; it lets a device that has logged in before pass without an argon2 check while
    its address or device id is locked. Whether the device is still live is asked each time.
    """

    def __init__(self, most: int = 10000) -> None:
        self.most = most
        self._lock = threading.Lock()
        self._seen: OrderedDict[tuple[str, str], bytes] = OrderedDict()

    @staticmethod
    def _digest(secret: str) -> bytes:
        return hashlib.sha256(secret.encode()).digest()

    def remember(self, user: str, device: str, secret: str) -> None:
        with self._lock:
            self._seen[(user, device)] = self._digest(secret)
            self._seen.move_to_end((user, device))
            while len(self._seen) > self.most:
                self._seen.popitem(last=False)

    def knows(self, user: str, device: str, secret: str) -> bool:
        with self._lock:
            known = self._seen.get((user, device))
        return known is not None and hmac.compare_digest(known, self._digest(secret))


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


def source_of(client_ip: str) -> str:
    """What failures are counted by: the address, or its /64 for IPv6, where one subscriber
    commonly holds a whole /64 and could otherwise rotate through 2**64 addresses."""
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return client_ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def _password_parts(request: dict[str, object]) -> tuple[str, str] | None:
    password = request.get("pass")
    return enrollment.split_password(password) if isinstance(password, str) else None


def decide(
    data_root: Path,
    request: dict[str, object],
    now: float,
    *,
    serve_files: bool = True,
    verified: Verified | None = None,
    gate: Gate | None = None,
) -> Decision:
    """Accept or refuse one login; `serve_files` adds the checks for serving the user's tree.

    `verified` lets secrets verified before pass a lock-out; `gate` bounds the argon2 checks
    (None: unbounded, for one-shot callers)."""
    user = request.get("user")
    source = source_of(str(request.get("client_ip") or ""))
    method = "password" if "pass" in request else "key" if "public_key" in request else "none"
    parts = _password_parts(request)
    device = parts[0][:64] if parts else ""
    unreadable = request.get("unreadable")
    with Accounts.open(data_root) as accounts:
        if isinstance(unreadable, str) or not isinstance(user, str):
            decision = Decision(False, method, str(unreadable or "no user name"), counts=True)
        else:
            login = _Login(user, request, method, source, parts)
            decision = _locked_or_checked(
                accounts, data_root, login, now, serve_files, verified, gate
            )
        if decision.accepted and parts and verified is not None and isinstance(user, str):
            verified.remember(user, parts[0], parts[1])
        if not decision.accepted and decision.counts:
            shown = authclient.shorten(user, authclient.LOG_USER)
            accounts.record_failure(source, device, shown, decision.reason, now, keep=WINDOW)
    return decision


@dataclass(frozen=True)
class _Login:
    user: str
    request: dict[str, object]
    method: str
    source: str
    parts: tuple[str, str] | None  # (device, secret) of a password of that form

    @property
    def device(self) -> str:
        return self.parts[0][:64] if self.parts else ""


def _locked_or_checked(
    accounts: Accounts,
    data_root: Path,
    login: _Login,
    now: float,
    serve_files: bool,
    verified: Verified | None,
    gate: Gate | None,
) -> Decision:
    user, method, parts, device = login.user, login.method, login.parts, login.device
    by_source, by_device = accounts.recent_failures(login.source, device, now - WINDOW)
    minutes = int(WINDOW // 60)
    locked = ""
    if by_source >= MAX_FAILURES:
        locked = f"{by_source} failed logins from this address in the last {minutes} minutes"
    elif by_device >= MAX_FAILURES and by_source >= 1:
        locked = (
            f"{by_device} failed logins for device {device} in the last {minutes} minutes, "
            "and this address has failed too"
        )
    if locked and method != "key":
        # No argon2 check here: only a secret verified before passes (decision 120).
        if (
            parts is not None
            and verified is not None
            and names.is_valid(user)
            and verified.knows(user, parts[0], parts[1])
        ):
            if accounts.is_live_device(user, parts[0]):
                return _serve(data_root, user, method, parts[0], serve_files)
            # Its holder, revoked since: told so (a 401, "enroll again"), not "try later".
            return Decision(False, method, REVOKED, device=device)
        return Decision(False, method, f"rate-limited: {locked}", device=device)
    try:
        return _check(accounts, data_root, user, login.request, method, serve_files, gate)
    except Busy as exc:
        return Decision(False, method, str(exc), device=device)


def _check(
    accounts: Accounts,
    data_root: Path,
    user: str,
    request: dict[str, object],
    method: str,
    serve_files: bool,
    gate: Gate | None = None,
) -> Decision:
    if not names.is_valid(user):
        return Decision(False, method, "invalid user name", counts=True)
    if method == "password":
        password = request["pass"]
        parts = enrollment.split_password(password) if isinstance(password, str) else None
        if parts is None:
            return Decision(False, method, "password not of the form DEVICE.SECRET", counts=True)
        device, secret = parts
        why = accounts.check_secret(user, device, secret, gate.run if gate else None)
        if why is not None:
            return Decision(False, method, why, device=device, counts=why != REVOKED)
    elif method == "key":
        blob = request["public_key"]
        found, why = accounts.check_key(user, blob) if isinstance(blob, str) else (None, "bad key")
        if found is None:
            return Decision(False, method, why or "key refused")
        device = found
    else:
        return Decision(False, method, "no password or key", counts=True)
    return _serve(data_root, user, method, device, serve_files)


def _serve(data_root: Path, user: str, method: str, device: str, serve_files: bool) -> Decision:
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


def log_entry(
    decision: Decision, request: dict[str, object], at: float, via: str
) -> dict[str, object]:
    return authclient.log_entry(
        "accepted" if decision.accepted else "refused",
        request,
        via,
        at,
        method=decision.method,
        device=authclient.shorten(decision.device, 64),
        reason=decision.reason,
    )


def write_log(data_root: Path, entry: dict[str, object]) -> None:
    authclient.append_log(str(data_root), entry)


def main(argv: Sequence[str] | None = None) -> int:
    """The old in-process proxy: one whole Python per login, no bound. Benchmarks only."""
    parser = argparse.ArgumentParser(
        prog="python -m bluegrass.cloud.authproxy",
        description="The in-process auth proxy, kept for benchmarks: `run` never uses it.",
    )
    parser.add_argument("--data", metavar="DIR", help="the data root (default: $BLUEGRASS_DATA)")
    args = parser.parse_args(argv)
    chosen = args.data or os.environ.get("BLUEGRASS_DATA")
    if not chosen:
        sys.stderr.write("authproxy: error: no data root (--data or $BLUEGRASS_DATA)\n")
        return 2
    data_root = Path(chosen).absolute()
    now = time.time()
    request = authclient.request_from(sys.stdin.buffer.read(authclient.MAX_INPUT + 1))
    try:
        decision = decide(data_root, request, now)
    except Exception as exc:  # fail closed, and say why in rclone's log
        sys.stderr.write(f"authproxy: refused: internal error: {exc}\n")
        return 1
    write_log(data_root, log_entry(decision, request, now, "sftp"))
    if not decision.accepted:
        sys.stderr.write(f"authproxy: refused: {json.dumps(decision.reason)}\n")
        return 1
    sys.stdout.write(json.dumps(decision.backend()) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
