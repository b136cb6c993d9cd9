"""The replica as the dashboard and /health show it: when the last complete upload ended,
how big the replica is, and whether the last attempt failed and why.

Every replicate of the whole server (`run`'s thread, the `replicate` command without
--user) updates DATA/replica/outcome.json. Not the job history: the accounts database is
part of the server state that every replicate uploads when it changed, so a row per
replicate would make every next replicate upload the database again (decision 154). The size
is read from the records of the newest manifests (DATA/replica/state/), so showing it costs
no request to the bucket.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from bluegrass.cloud import settings
from bluegrass.cloud.database import now_text
from bluegrass.cloud.replica import keys
from bluegrass.cloud.replica.replicate import Local
from bluegrass.core.config import Config

OK, FAILED, UNREACHABLE = "ok", "failed", "unreachable"
FILENAME = "outcome.json"


@dataclass(frozen=True)
class ReplicaStatus:
    last_complete: str | None  # when the last replicate that sent everything ended (UTC)
    size: int  # bytes the newest manifests name (histories and server state, unencrypted)
    areas: int  # areas with a manifest: the server's and one per user
    problem: str | None  # the last replicate's failure, as it was said; None when it worked
    failing_since: str | None  # the first failure after the last success
    attempts: int  # failed attempts since the last success

    @property
    def ok(self) -> bool:
        return self.problem is None

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "ok": self.ok}


def _path(data_root: Path) -> Path:
    return keys.folder(data_root) / FILENAME


def _load(data_root: Path) -> dict[str, object]:
    try:
        data = json.loads(_path(data_root).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record(data_root: Path, outcome: str, detail: str) -> None:
    """After a replicate of the whole server: `outcome` is OK, FAILED or UNREACHABLE."""
    folder = keys.folder(data_root)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    # `run`'s thread and a `replicate` command may both record: one at a time.
    with (folder / f"{FILENAME}.lock").open("a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        data = _load(data_root)
        now = now_text()
        if outcome == OK:
            data.update(last_complete=now, failing_since=None, attempts=0, problem=None)
        else:
            attempts = data.get("attempts")
            data.update(
                failing_since=data.get("failing_since") or now,
                attempts=(attempts if isinstance(attempts, int) else 0) + 1,
                problem=detail,
            )
        data.update(last_attempt=now, last_outcome=outcome)
        temp = folder / f".{FILENAME}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        temp.replace(_path(data_root))


def size_of(data_root: Path) -> tuple[int, int]:
    """(bytes, areas) named by the newest manifest of every area this server knows."""
    total = areas = 0
    with contextlib.suppress(OSError):
        for path in sorted((keys.folder(data_root) / "state").glob("*.json")):
            manifest = Local(path).manifest
            if manifest is not None:
                areas += 1
                total += sum(o.size for o in manifest.objects())
    return total, areas


def read(data_root: Path, cfg: Config) -> ReplicaStatus | None:
    """None when no replica is configured: nothing to show."""
    if not settings.replica_enabled(cfg):
        return None
    data = _load(data_root)

    def text(key: str) -> str | None:
        value = data.get(key)
        return value if isinstance(value, str) else None

    attempts = data.get("attempts")
    size, areas = size_of(data_root)
    return ReplicaStatus(
        last_complete=text("last_complete"),
        size=size,
        areas=areas,
        problem=text("problem"),
        failing_since=text("failing_since"),
        attempts=attempts if isinstance(attempts, int) else 0,
    )
