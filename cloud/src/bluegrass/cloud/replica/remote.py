"""rclone against the replica's bucket, configured only through its environment.

Remotes come from RCLONE_CONFIG_<NAME>_<KEY> variables (decision 141): `bgs3` is the bucket,
`bgarea` one crypt remote over `bgs3:<bucket>/<prefix>` (an alias when encrypt = false). No
secret is ever on a command line (other users of the machine can read those) and no rclone
configuration file is read (`--config ""`). The pinned rclone runs with argument lists, a
clean environment (no inherited RCLONE_* variable) and JSON logs (docs/design.md D1).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bluegrass.cloud.replica.keys import CryptSecret
from bluegrass.cloud.replica.settings import ReplicaSettings
from bluegrass.core import rclone
from bluegrass.core.errors import BluegrassError
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BUCKET_REMOTE = "bgs3"
AREA_REMOTE = "bgarea"
# Fail within a minute or so when the bucket cannot be reached: the scheduler retries with
# its own back-off, and a command line should not hang on rclone's default 10 x 3 attempts.
NETWORK_FLAGS = ["--retries", "2", "--low-level-retries", "3", "--contimeout", "15s"]
_UNREACHABLE = (
    "connection refused",
    "no such host",
    "i/o timeout",
    "dial tcp",
    "network is unreachable",
    "connection reset",
    "tls handshake timeout",
    "context deadline exceeded",
)


class ReplicaError(BluegrassError):
    """rclone failed against the bucket; the message carries rclone's own last error."""


class ReplicaUnreachable(ReplicaError):
    """The bucket's endpoint could not be reached at all: worth trying again later."""


@dataclass(frozen=True)
class Listed:
    path: str  # the plain name inside the area
    size: int  # the plain size (crypt adds its header and per-chunk overhead on top)
    raw: str  # the object's name in the bucket, below the area's prefix


# rclone's fixed key for obscuring secrets in its configuration (fs/config/obscure): obscuring
# hides a secret from a glance, it is no protection, and rclone reveals it with this key.
_OBSCURE_KEY = bytes.fromhex("9c935b48730a554d6bfd7c63c886a92bd390198eb8128afbf4de162b8b95f638")
# The rclone processes running now, so that `run` can end them when it stops: left alone, an
# upload would go on after the server has gone (harmless, decision 143, but untidy).
_children: set[subprocess.Popen[str]] = set()
_children_lock = threading.Lock()
# Set by stop_all(): a replicate makes bundles and sends them from several threads, so a
# stop that falls between two rclone runs must also keep the next one from starting.
_stopping = threading.Event()


def stop_all() -> None:
    """Terminate every rclone this process is running against the bucket, and start no
    other: the process is stopping."""
    with _children_lock:
        _stopping.set()
        for child in _children:
            if child.poll() is None:
                child.terminate()


def obscure(secret: str) -> str:
    """rclone's obscured form of a secret (what its config wants): AES-256-CTR under rclone's
    fixed key with a random IV, IV and ciphertext in unpadded URL-safe base64, as `rclone
    obscure` makes it. Done here rather than by `rclone obscure`, which cost a process start
    (60 ms) per secret, four per replicate (decision 162)."""
    iv = os.urandom(16)
    encryptor = Cipher(algorithms.AES(_OBSCURE_KEY), modes.CTR(iv)).encryptor()
    sealed = encryptor.update(secret.encode("utf-8")) + encryptor.finalize()
    return base64.urlsafe_b64encode(iv + sealed).decode("ascii").rstrip("=")


def _clean_env() -> dict[str, str]:
    # An inherited RCLONE_* variable would change what rclone does behind our back (and a
    # stray RCLONE_CONFIG_BGS3_* would point it at another bucket).
    return {k: v for k, v in os.environ.items() if not k.startswith("RCLONE_")}


def _last_error(stderr: str) -> str:
    """rclone's last error from its JSON log (or its last line of text)."""
    message = ""
    for line in stderr.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            message = line
            continue
        if not isinstance(record, dict):
            continue
        text = str(record.get("msg", "")).strip()
        # rclone logs the error that ends a command at level "notice", as "Failed to <cmd>".
        if record.get("level") in ("error", "critical", "fatal") or text.startswith("Failed to"):
            message = text or message
    return message or "no message"


def count_uploads(stderr: str) -> int:
    """How many objects an rclone copy sent, from its JSON log ("Copied (new)")."""
    count = 0
    for line in stderr.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and str(record.get("msg", "")).startswith("Copied"):
            count += 1
    return count


def stored_size(size: int, encrypt: bool) -> int:
    """The size in the bucket of an object of `size` bytes: crypt adds a 32-byte header (magic
    and nonce) and a 16-byte authenticator per 64 KiB block."""
    if not encrypt:
        return size
    blocks = -(-size // 65536)
    return 32 + size + 16 * blocks


class Bucket:
    """The bucket itself (raw, undecrypted names) and the areas inside it."""

    def __init__(self, settings: ReplicaSettings) -> None:
        self.settings = settings

    def env(self, area: CryptSecret | None = None) -> dict[str, str]:
        s = self.settings
        env = _clean_env()
        base = f"RCLONE_CONFIG_{BUCKET_REMOTE.upper()}_"
        env.update(
            {
                base + "TYPE": "s3",
                base + "PROVIDER": s.provider,
                base + "ENDPOINT": s.endpoint,
                base + "ACCESS_KEY_ID": s.access_key_id,
                base + "SECRET_ACCESS_KEY": s.secret_access_key,
                # The bucket is made by its owner (with Object Lock, which cannot be added
                # later); the server's key need not be allowed to create buckets.
                base + "NO_CHECK_BUCKET": "true",
                base + "ENV_AUTH": "false",
            }
        )
        if s.region:
            env[base + "REGION"] = s.region
        if area is not None:
            name = f"RCLONE_CONFIG_{AREA_REMOTE.upper()}_"
            env[name + "REMOTE"] = f"{BUCKET_REMOTE}:{s.bucket}/{area.prefix}"
            if s.encrypt:
                env.update(
                    {
                        name + "TYPE": "crypt",
                        name + "PASSWORD": obscure(area.password),
                        name + "PASSWORD2": obscure(area.password2),
                        name + "FILENAME_ENCRYPTION": "standard",
                        name + "DIRECTORY_NAME_ENCRYPTION": "true",
                        # S3 names are case-sensitive: base64 names are shorter than base32,
                        # which keeps further from crypt's name-length limit.
                        name + "FILENAME_ENCODING": "base64",
                    }
                )
            else:
                env[name + "TYPE"] = "alias"
        return env

    def run(
        self,
        args: Sequence[str],
        *,
        area: CryptSecret | None = None,
        input: str | None = None,
        timeout: float | None = None,
    ) -> subprocess.CompletedProcess[str]:
        argv = [
            str(rclone.binary()),
            *args,
            "--config",
            "",
            "--use-json-log",
            "--log-level",
            "INFO",
            *NETWORK_FLAGS,
        ]
        env = self.env(area)
        with _children_lock:
            if _stopping.is_set():
                raise ReplicaError(f"rclone {args[0]} not started: stopping")
            child = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            _children.add(child)
        with child:
            try:
                stdout, stderr = child.communicate(input, timeout=timeout)
            except subprocess.TimeoutExpired:
                child.kill()
                child.communicate()
                raise ReplicaUnreachable(
                    f"rclone {args[0]} against {self.settings.endpoint} took over {timeout:g} s"
                ) from None
            finally:
                with _children_lock:
                    _children.discard(child)
        proc = subprocess.CompletedProcess(argv, child.returncode, stdout, stderr)
        if proc.returncode < 0:
            raise ReplicaError(f"rclone {args[0]} was stopped (signal {-proc.returncode})")
        if proc.returncode != 0:
            error = _last_error(proc.stderr)
            kind = (
                ReplicaUnreachable
                if any(word in error.lower() for word in _UNREACHABLE)
                else ReplicaError
            )
            raise kind(f"rclone {args[0]} on bucket {self.settings.bucket} failed: {error}")
        return proc

    # -- an area (one crypt remote) -------------------------------------------------------

    def list(self, area: CryptSecret) -> dict[str, Listed]:
        """Every object of the area, by plain name. An area nothing was uploaded to yet is
        empty, not an error."""
        args = ["lsjson", "-R", "--files-only", "--no-mimetype", f"{AREA_REMOTE}:"]
        if self.settings.encrypt:
            args.insert(1, "--encrypted")
        try:
            out = self.run(args, area=area).stdout
        except ReplicaError as exc:
            if "directory not found" in str(exc):
                return {}
            raise
        found = {}
        for item in json.loads(out or "[]"):
            raw = item.get("EncryptedPath", item["Path"])
            found[item["Path"]] = Listed(item["Path"], int(item["Size"]), raw)
        return found

    def upload(self, area: CryptSecret, staging: Path, files: Sequence[str] | None = None) -> int:
        """Copy every file under `staging` (or only `files`, paths below it) into the area at
        the same names, never replacing or deleting anything there (--immutable); return
        how many were sent."""
        args = ["copy", "--immutable", "--no-update-dir-modtime"]
        listing = None
        if files is not None:
            # Names through stdin, not argv; --no-traverse checks each name at the
            # destination instead of listing the whole area.
            args += ["--files-from-raw", "-", "--no-traverse"]
            listing = "".join(f"{f}\n" for f in files)
        proc = self.run([*args, str(staging), f"{AREA_REMOTE}:"], area=area, input=listing)
        return count_uploads(proc.stderr)

    def download(self, area: CryptSecret, paths: Iterable[str], dest: Path) -> None:
        """Copy the named objects of the area into `dest` (names through stdin, not argv)."""
        listing = "".join(f"{p}\n" for p in paths)
        if not listing:
            return
        dest.mkdir(parents=True, exist_ok=True)
        self.run(
            ["copy", "--files-from-raw", "-", "--no-traverse", f"{AREA_REMOTE}:", str(dest)],
            area=area,
            input=listing,
        )

    # -- the bucket itself ----------------------------------------------------------------

    def list_raw(self) -> dict[str, int]:
        """{name in the bucket: stored size} of every object: the one listing that tells
        whether what we remember uploading is still there, without deriving any key."""
        out = self.run(
            [
                "lsjson",
                "-R",
                "--files-only",
                "--no-mimetype",
                "--no-modtime",
                f"{BUCKET_REMOTE}:{self.settings.bucket}",
            ]
        ).stdout
        return {item["Path"]: int(item["Size"]) for item in json.loads(out or "[]")}

    def put_raw(self, key: str, data: str) -> None:
        self.run(["rcat", f"{BUCKET_REMOTE}:{self.settings.bucket}/{key}"], input=data)

    def delete_raw(self, key: str) -> None:
        self.run(["deletefile", f"{BUCKET_REMOTE}:{self.settings.bucket}/{key}"])

    def exists_raw(self, key: str) -> bool:
        """Whether `key` is a current object of the bucket (a listing, not a download)."""
        out = self.run(
            [
                "lsjson",
                "--files-only",
                "--no-mimetype",
                f"{BUCKET_REMOTE}:{self.settings.bucket}/{key}",
            ]
        ).stdout
        return bool(json.loads(out or "[]"))

    def versions_raw(self, key: str) -> list[str] | None:
        """The names rclone gives the stored versions of `key` (`<name>` for the current one,
        `<name>-v<time>` for older ones and for one hidden by a delete marker), or None when
        the server or the key cannot list versions (`rclone serve s3` answers NotImplemented;
        an IAM key may lack s3:ListBucketVersions)."""
        folder, _, name = key.rpartition("/")
        try:
            out = self.run(
                [
                    "lsjson",
                    "--s3-versions",
                    "--files-only",
                    "--no-mimetype",
                    f"{BUCKET_REMOTE}:{self.settings.bucket}/{folder}",
                ]
            ).stdout
        except ReplicaError:
            return None
        return [
            item["Name"]
            for item in json.loads(out or "[]")
            if item["Name"] == name or item["Name"].startswith(f"{name}-v")
        ]

    def versioning(self) -> str | None:
        """The bucket's versioning state as S3 says it ("Enabled", "Suspended",
        "Unversioned"), or None when it cannot be read."""
        try:
            out = self.run(["backend", "versioning", f"{BUCKET_REMOTE}:{self.settings.bucket}"])
        except ReplicaError:
            return None
        try:
            state = json.loads(out.stdout)
        except ValueError:
            return None
        return state if isinstance(state, str) else None

    def delete_versions(self, folder: str) -> None:
        """Try to delete every stored version under `folder` (only the probe's own folder is
        ever given), then the delete markers left there."""
        target = f"{BUCKET_REMOTE}:{self.settings.bucket}/{folder}"
        self.run(["delete", "--s3-versions", target])
        # `delete --s3-versions` leaves the delete marker; cleanup-hidden removes it.
        self.run(["backend", "cleanup-hidden", target])
