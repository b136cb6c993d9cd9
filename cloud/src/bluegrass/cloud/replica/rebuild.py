"""A cloud rebuilt from its replica: an empty data root (the configuration and the
administrator's secret only) filled with the server's state and every user's histories and
live files, ready for `run`.

Everything is built in DATA/.rebuild/ and moved into place at the end, the data root's marker
last: a rebuild that fails half-way leaves no data root `run` would accept, and running it
again starts over.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bluegrass.cloud import settings as cloud_settings
from bluegrass.cloud.datadir import MARKER, DataRoot
from bluegrass.cloud.liverestore import restore_live
from bluegrass.cloud.replica import bundles, keys, serverstate
from bluegrass.cloud.replica.keys import CryptSecret
from bluegrass.cloud.replica.manifest import Manifest, StoredObject, sha256_file
from bluegrass.cloud.replica.remote import Bucket, ReplicaError
from bluegrass.cloud.replica.replicate import (
    SERVER_AREA,
    Local,
    newest_complete,
    replica_lock,
    state_path,
)
from bluegrass.cloud.replica.settings import from_config
from bluegrass.core import syncmeta, syncspec
from bluegrass.core.errors import BluegrassError, UsageError
from bluegrass.core.store import Repository
from bluegrass.core.store.manifest import ROOT

STAGING = ".rebuild"


@dataclass
class RebuiltSegment:
    user: str
    segment: str
    bundles: int
    head: str
    live_files: int


@dataclass
class RebuildResult:
    data: str
    server_manifest: str
    users: list[str]
    segments: list[RebuiltSegment] = field(default_factory=list)
    # Newer manifests passed over because the bucket lacks what they name (damage or a
    # deletion): the rebuild used the newest complete state before them.
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "seconds": round(self.seconds, 3)}


def refuse_unless_empty(root: DataRoot, keep: tuple[str, ...], command: str) -> None:
    """Refuse a data root holding anything but the configuration, the files of `keep` (under
    replica/) and a staging folder left by a failed rebuild; nothing is written before."""
    extra = []
    for entry in sorted(root.path.iterdir()):
        if entry.name in (cloud_settings.FILENAME, STAGING):
            continue
        if entry.name == keys.FOLDER and entry.is_dir():
            extra += [
                f"{keys.FOLDER}/{p.name}" for p in entry.iterdir() if p.name not in (*keep, "lock")
            ]
            continue
        extra.append(entry.name)
    if extra:
        shown = ", ".join(extra[:3]) + (", ..." if len(extra) > 3 else "")
        holding = " and ".join([cloud_settings.FILENAME, *[f"{keys.FOLDER}/{k}" for k in keep]])
        raise UsageError(
            f"{root.path} is not empty (it holds {shown}); {command} fills only a data root "
            f"holding {holding}"
        )


@contextlib.contextmanager
def staged(root: DataRoot) -> Iterator[DataRoot]:
    """A fresh DATA/.rebuild/ with files/ and repos/, under the replica's lock; moved into
    place with the data root's marker last when the block ends without an error."""
    with replica_lock(root.path):
        staging = root.path / STAGING
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o700)
        built = DataRoot(staging)
        built.files.mkdir()
        built.repos.mkdir()
        yield built
        shutil.rmtree(staging / "locks", ignore_errors=True)
        _move_into_place(staging, root.path)
        (root.path / MARKER).write_text("Bluegrass cloud data root, format 1\n")


def check_history(repo: Repository, name: str) -> str:
    """The head of a history just rebuilt, once it passes `verify`."""
    problems = repo.verify()
    if problems:
        raise BluegrassError(f"{name}: rebuilt history fails verify: {problems[0]}")
    return repo.head() or ""


def fetch_checked(
    bucket: Bucket, secret: CryptSecret, objects: list[StoredObject], dest: Path
) -> None:
    """Download the objects into `dest` and check each one's sha256: crypt does not notice
    an object cut short at a block boundary (research report, B)."""
    try:
        bucket.download(secret, [o.key for o in objects], dest)
    except ReplicaError as exc:
        # rclone's error names no object; what did not arrive is what failed (a changed byte
        # fails crypt's authentication, and rclone keeps no part of such a file).
        failed = [o.key for o in objects if not (dest / o.key).is_file()]
        if not failed:
            raise
        shown = ", ".join(failed[:3]) + (", ..." if len(failed) > 3 else "")
        raise ReplicaError(f"{shown} could not be downloaded and decrypted: {exc}") from None
    for obj in objects:
        path = dest / obj.key
        if not path.is_file():
            raise ReplicaError(f"{obj.key} could not be downloaded")
        if sha256_file(path) != obj.sha256:
            raise ReplicaError(f"{obj.key} is damaged: its sha256 is not the manifest's")


def rebuild_from_replica(root: DataRoot) -> RebuildResult:
    started = time.monotonic()
    if not root.path.is_dir():
        raise UsageError(
            f"{root.path} does not exist; make it and put {cloud_settings.FILENAME} and "
            f"{keys.FOLDER}/{keys.ADMIN_FILE} in it"
        )
    refuse_unless_empty(root, (keys.ADMIN_FILE,), "rebuild --from-replica")
    cfg = cloud_settings.load(root.path)
    bucket = Bucket(from_config(cfg))
    admin, _ = keys.admin_secret(root.path, create=False)
    with staged(root) as built:
        staging = built.path
        downloads = staging / "downloads"
        listing = bucket.list(admin)
        server, passed = newest_complete(bucket, admin, listing, downloads / "read")
        if server is None:
            raise ReplicaError(
                f"bucket {bucket.settings.bucket} holds no complete server state (no manifest "
                "whose objects are all there); nothing to rebuild from"
            )
        fetch_checked(bucket, admin, server.state, downloads / "server")
        state_dir = downloads / "server-state"
        state_dir.mkdir()
        for obj in server.state:
            (downloads / "server" / obj.key).replace(state_dir / obj.key.rsplit("/", 1)[-1])
        serverstate.install(state_dir, staging)
        users = serverstate.users_in_database(staging / serverstate.DATABASE)
        result = RebuildResult(str(root.path), server.key, users)
        result.warnings += [f"server: {why}" for why in passed]
        # What the next replicate compares with: it then sends nothing the bucket has.
        Local(state_path(staging, SERVER_AREA)).remember(server, listing)
        for user in users:
            (built.files / user).mkdir()
            if keys.user_path(staging, user).is_file():
                _user(bucket, built, user, downloads / user, result)
        shutil.rmtree(downloads)
    result.seconds = time.monotonic() - started
    return result


def _user(bucket: Bucket, built: DataRoot, user: str, scratch: Path, result: RebuildResult) -> None:
    secret = keys.user_secret(built.path, user, create=False)
    listing = bucket.list(secret)
    manifest: Manifest | None
    manifest, passed = newest_complete(bucket, secret, listing, scratch / "read")
    result.warnings += [f"{user}: {why}" for why in passed]
    if manifest is None:
        return  # never replicated (a user added after the last upload): no histories
    for segment in sorted(manifest.segments):
        chain = manifest.chain(segment)
        if not chain or chain[0].kind != "full":
            raise ReplicaError(f"{user}/{segment}: the replica has no full bundle to start from")
        fetch_checked(bucket, secret, [b.objects()[0] for b in chain], scratch)
        repo = Repository.init(built.repo_path(user, segment))
        for bundle in chain:
            path = scratch / bundle.key
            problem = bundles.verify(repo.git, path)
            if problem:
                raise ReplicaError(f"{user}/{bundle.key}: {problem}")
            bundles.fetch(repo.git, path, sorted(bundle.tips))
            path.unlink()
        if bundles.tips(repo.git) != chain[-1].tips:
            raise ReplicaError(f"{user}/{segment}: the rebuilt branches are not the manifest's")
        head = check_history(repo, f"{user}/{segment}")
        live = built.live_tree(user, segment)
        live.mkdir()
        restored = restore_live(built, repo, user, segment, head, ROOT)
        _mark_rebuilt(live, manifest.key)
        result.segments.append(RebuiltSegment(user, segment, len(chain), head, restored.files))
    Local(state_path(built.path, user)).remember(manifest, listing)


def _mark_rebuilt(live: Path, manifest: str) -> None:
    """Tell the devices this live tree is the last snapshot, not what they last saw here
    (it lacks the check file, which snapshots never hold): their next sync is a resync,
    which deletes nothing, rather than a bisync that would take what is missing for
    deletions and older copies for edits (decision 161)."""
    meta = live / os.fsdecode(syncmeta.FOLDER)
    meta.mkdir(exist_ok=True)
    (meta / syncspec.REBUILT_FILENAME).write_text(
        f"rebuilt from the replica's {manifest} at {datetime.now(UTC).isoformat()}\n",
        encoding="utf-8",
    )


def _move_into_place(staging: Path, target: Path) -> None:
    for entry in sorted(staging.iterdir()):
        if entry.name == keys.FOLDER:
            dest = target / keys.FOLDER
            dest.mkdir(mode=0o700, exist_ok=True)
            for inner in entry.iterdir():
                inner.replace(dest / inner.name)
            entry.rmdir()
        else:
            entry.replace(target / entry.name)
    staging.rmdir()
