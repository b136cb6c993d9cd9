"""`replica check`: download what the bucket holds and check it, and probe whether the
server's key can delete.

Per area (the server's state, each user whose secrets this server has): the newest complete
manifest and its age; every object it names downloaded and its sha256 compared; each
segment's bundles from the newest full one fetched in order into a scratch repository, each
`git bundle verify`-ed first, and the result fsck-ed. Then the delete probe (decision 148):
an object of the probe's own is uploaded and the server's key tries to delete it, then its
stored versions; what is left afterwards (not rclone's exit code: some S3 servers say yes and
keep, or say no and delete) tells how protected the history is against a stolen key. The
probe never touches any other object.
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
PROBE_TEXT = "Bluegrass checks whether its key can delete; keep or remove.\n"
SETUP = (
    "Make the bucket with Object Lock (compliance mode, a default retention) or give the "
    "server a key without s3:DeleteObject and s3:DeleteObjectVersion (docs/replica.md)"
)

# What the probe found, from the most protected to the least.
DELETE_REFUSED = "delete-refused"  # the key could not delete, overwrites keep old versions
OVERWRITABLE = "overwritable"  # the key could not delete, but overwrote with no version kept
VERSIONS_KEPT = "versions-kept"  # a delete hid it, its stored version could not be removed
VERSIONS_DELETABLE = "versions-deletable"  # versioned, but the key removed the versions too
NO_PROTECTION = "none"  # a delete removed it and no version was kept
UNKNOWN = "unknown"  # the probe could not be made or read


@dataclass(frozen=True)
class Probe:
    protection: str
    protected: bool | None  # None: unknown
    message: str


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
    protection: str  # one of the probe's outcomes above

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
    probe = delete_probe(bucket)
    ages = [a.age_hours for a in areas if a.age_hours is not None]
    return CheckResult(
        areas, probe.protected, probe.message, min(ages) if ages else None, probe.protection
    )


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


def delete_probe(bucket: Bucket) -> Probe:
    """Upload an object of the probe's own and try, with the server's key, what a thief with
    that key would try: overwrite it, delete it, then delete its stored versions. Judged by
    what is left afterwards, never by what rclone said."""
    # A folder of its own per probe, so that what is tried on the folder touches nothing else.
    folder = f"{PROBE_PREFIX}/{secrets.token_hex(8)}"
    key = f"{folder}/probe"
    try:
        bucket.put_raw(key, PROBE_TEXT)
        bucket.put_raw(key, PROBE_TEXT.replace("checks", "overwrites"))
    except ReplicaError as exc:
        return Probe(UNKNOWN, None, f"could not upload a probe object: {exc}")
    versions = _versions(bucket, key)
    try:
        bucket.delete_raw(key)
    except ReplicaError:
        pass  # what is left below decides, whatever rclone said
    try:
        still_there = bucket.exists_raw(key)
    except ReplicaError as exc:
        return Probe(UNKNOWN, None, f"could not list the probe object {key}: {exc}")
    if still_there:
        if versions is None:
            return Probe(
                UNKNOWN,
                None,
                f"the server's key could not delete a stored object ({key}), and whether an "
                "overwrite keeps the old version cannot be read with this key. Turn versioning "
                "on for the bucket (docs/replica.md)",
            )
        if len(versions) < 2:
            return Probe(
                OVERWRITABLE,
                False,
                "the server's key cannot delete, but it overwrote a stored object and the "
                "bucket kept no older version: a stolen key could erase the replica by "
                "overwriting it. Turn versioning on for the bucket, or better make it with "
                "Object Lock (docs/replica.md)",
            )
        return Probe(
            DELETE_REFUSED,
            True,
            f"the server's key could not delete a stored object ({key} is still there) and "
            "an overwrite kept the older version: what it uploaded cannot be erased with it",
        )
    after = _versions(bucket, key)
    if after is None:
        return Probe(
            UNKNOWN,
            None,
            f"the server's key deleted the probe object {key}, and whether the bucket kept a "
            "version of it cannot be read with this key (it lacks s3:ListBucketVersions?). "
            f"{SETUP}",
        )
    if not after:
        return Probe(
            NO_PROTECTION,
            False,
            "the server's key deleted a stored object and the bucket kept no version of it: "
            f"a stolen key could erase the replica. {SETUP}",
        )
    try:
        bucket.delete_versions(folder)
    except ReplicaError:
        pass
    left = _versions(bucket, key)
    if left is None:
        return Probe(UNKNOWN, None, f"could not list the versions of the probe object {key}")
    if left:
        return Probe(
            VERSIONS_KEPT,
            True,
            "a delete only hides a stored object and its stored versions could not be "
            f"removed ({key} kept): what the server uploaded cannot be erased with its key "
            "while retention lasts; a stolen key could still hide objects behind delete "
            "markers, which the bucket's owner can remove (docs/replica.md)",
        )
    return Probe(
        VERSIONS_DELETABLE,
        False,
        "the bucket keeps versions of what is deleted, but the server's key deleted the "
        f"stored versions too: a stolen key could erase the replica. {SETUP}",
    )


def _versions(bucket: Bucket, key: str) -> list[str] | None:
    """The stored versions of `key`; [] on a bucket that says it is unversioned (where the
    versions listing itself may be refused, as `rclone serve s3` does); None if unknown."""
    versions = bucket.versions_raw(key)
    if versions is None and bucket.versioning() == "Unversioned":
        return []
    return versions
