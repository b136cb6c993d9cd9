"""One segment's history as the replica holds it, replayed into a scratch repository: the
good copy `repair --from-replica` heals a damaged repository from.

The same steps as a rebuild's (rebuild._user), for one segment: the newest complete manifest
of the user's, its bundle chain downloaded and each object's sha256 checked, every bundle
`git bundle verify`-ed and fetched fast-forward only.
"""

from __future__ import annotations

from pathlib import Path

from bluegrass.cloud import settings
from bluegrass.cloud.datadir import DataRoot
from bluegrass.cloud.replica import bundles, keys
from bluegrass.cloud.replica.rebuild import fetch_checked
from bluegrass.cloud.replica.remote import Bucket, ReplicaError
from bluegrass.cloud.replica.replicate import newest_complete
from bluegrass.cloud.replica.settings import from_config
from bluegrass.core.errors import UsageError
from bluegrass.core.store import Repository


def history_from_replica(
    root: DataRoot, user: str, segment: str, scratch: Path
) -> tuple[Path, str]:
    """Given a user's segment and an empty scratch folder, rebuild the replica's copy of the
    segment's history in it; return the repository's path and the manifest it came from.
    Raise UsageError if no replica is set or it holds no history of the segment."""
    bucket = Bucket(from_config(settings.load(root.path)))
    secret = keys.user_secret(root.path, user, create=False)
    listing = bucket.list(secret)
    manifest, _ = newest_complete(bucket, secret, listing, scratch / "read")
    chain = manifest.chain(segment) if manifest is not None else []
    if manifest is None or not chain:
        raise UsageError(
            f"the replica holds no history of {user}/{segment} (never replicated, or no "
            "complete manifest of the user's)"
        )
    if chain[0].kind != "full":
        raise ReplicaError(f"{user}/{segment}: the replica has no full bundle to start from")
    downloads = scratch / "bundles"
    fetch_checked(bucket, secret, [b.objects()[0] for b in chain], downloads)
    repo = Repository.init(scratch / "copy.git")
    for bundle in chain:
        path = downloads / bundle.key
        problem = bundles.verify(repo.git, path)
        if problem:
            raise ReplicaError(f"{user}/{bundle.key}: {problem}")
        bundles.fetch(repo.git, path, sorted(bundle.tips))
        path.unlink()
    return repo.path, manifest.key
