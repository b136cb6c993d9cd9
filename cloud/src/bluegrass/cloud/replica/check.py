"""`replica check`: download what the bucket holds and check it, and probe whether the
server's key can delete.

Per area (the server's state, each user whose secrets this server has): the newest complete
manifest and its age; every object it names downloaded and its sha256 compared; each
segment's bundles from the newest full one fetched in order into a scratch repository, each
`git bundle verify`-ed first, and the result fsck-ed. Then a probe object is uploaded and
deleted: a bucket that lets the server's key delete it could lose its history to a stolen
key, and is reported as unprotected with what to set up (docs/replica.md).
"""

from __future__ import annotations

import secrets
import shutil
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bluegrass.cloud.datadir import DataRoot
from bluegrass.cloud.replica import bundles, keys
from bluegrass.cloud.replica.keys import CryptSecret
from bluegrass.cloud.replica.manifest import Bundle
from bluegrass.cloud.replica.rebuild import fetch_checked
from bluegrass.cloud.replica.remote import Bucket, ReplicaError
from bluegrass.cloud.replica.replicate import SERVER_AREA, newest_complete, work_path
from bluegrass.cloud.replica.settings import from_config
from bluegrass.core.config import Config
from bluegrass.core.errors import BluegrassError
from bluegrass.core.store import Repository

PROBE_PREFIX = "bluegrass-delete-probe"
UNPROTECTED = (
    "the server's key deleted a stored object: a stolen key could erase the replica. Make the "
    "bucket with Object Lock (compliance mode, a default retention) or give the server a key "
    "without delete rights (docs/replica.md)"
)


@dataclass
class AreaCheck:
    area: str
    manifest: str | None = None
    created: str | None = None
    age_hours: float | None = None
    objects: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass
class CheckResult:
    areas: list[AreaCheck]
    protected: bool | None  # None: the probe could not be made
    probe: str
    newest_age_hours: float | None

    @property
    def ok(self) -> bool:
        return all(not a.problems and a.manifest for a in self.areas)

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "ok": self.ok}


def _age(created: str) -> float | None:
    try:
        then = datetime.fromisoformat(created)
    except ValueError:
        return None
    return round((datetime.now(UTC) - then).total_seconds() / 3600, 2)


def check_replica(root: DataRoot, cfg: Config) -> CheckResult:
    bucket = Bucket(from_config(cfg))
    admin, _ = keys.admin_secret(root.path, create=False)
    scratch = work_path(root.path, "check")
    shutil.rmtree(scratch, ignore_errors=True)
    areas = [_area(bucket, SERVER_AREA, admin, scratch / SERVER_AREA)]
    for user in keys.known_users(root.path):
        areas.append(_area(bucket, user, keys.user_secret(root.path, user), scratch / user))
    shutil.rmtree(scratch, ignore_errors=True)
    protected, probe = _probe(bucket)
    ages = [a.age_hours for a in areas if a.age_hours is not None]
    return CheckResult(areas, protected, probe, min(ages) if ages else None)


def _area(bucket: Bucket, area: str, secret: CryptSecret, scratch: Path) -> AreaCheck:
    found = AreaCheck(area)
    try:
        listing = bucket.list(secret)
        manifest, passed = newest_complete(bucket, secret, listing, scratch / "read")
        found.problems += passed
        if manifest is None:
            found.problems.append("no complete manifest in the bucket")
            return found
        found.manifest, found.created = manifest.key, manifest.created
        found.age_hours = _age(manifest.created)
        objects = manifest.objects()
        found.objects, found.bytes = len(objects), sum(o.size for o in objects)
        try:
            fetch_checked(bucket, secret, objects, scratch / "objects")
        except ReplicaError as exc:
            found.problems.append(str(exc))
            return found
        for segment in sorted(manifest.segments):
            problem = _replay(manifest.chain(segment), scratch, segment)
            if problem:
                found.problems.append(f"{segment}: {problem}")
    except BluegrassError as exc:
        found.problems.append(str(exc))
    return found


def _replay(chain: list[Bundle], scratch: Path, segment: str) -> str | None:
    """Fetch the chain into a scratch repository, verifying each bundle first."""
    repo = Repository.init(scratch / "repos" / f"{segment}.git")
    try:
        for bundle in chain:
            path = scratch / "objects" / bundle.key
            problem = bundles.verify(repo.git, path)
            if problem:
                return f"{bundle.key}: {problem}"
            bundles.fetch(repo.git, path, sorted(bundle.tips))
        problems = repo.verify()
        return problems[0] if problems else None
    except BluegrassError as exc:
        return str(exc)
    finally:
        shutil.rmtree(repo.path, ignore_errors=True)


def _probe(bucket: Bucket) -> tuple[bool | None, str]:
    key = f"{PROBE_PREFIX}/{secrets.token_hex(8)}"
    try:
        bucket.put_raw(key, "Bluegrass checks whether its key can delete; keep or remove.\n")
    except ReplicaError as exc:
        return None, f"could not upload a probe object: {exc}"
    try:
        bucket.delete_raw(key)
    except ReplicaError as exc:
        return True, f"the delete of a stored object was refused ({exc})"
    if bucket.has_old_version(key):
        # A versioned bucket keeps what a plain delete hides; whether the old version can
        # go too is what Object Lock decides.
        try:
            bucket.delete_old_versions(key)
        except ReplicaError as exc:
            return True, f"deletes only hide objects and old versions are locked ({exc})"
    return False, UNPROTECTED
