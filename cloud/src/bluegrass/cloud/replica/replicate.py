"""Uploading what is new: per segment a git bundle, then its refs, then the user's manifest.

Order and naming are what make an interrupted run harmless (decision 143):
1. each new bundle is made, checked with `git bundle verify`, hashed, and recorded locally
   as pending (DATA/replica/state/<area>.json) before it is sent;
2. bundles and their refs files are uploaded with `rclone copy --immutable` under names no
   object in the bucket has yet: nothing is overwritten or deleted, so a key without delete
   rights is enough;
3. last, once every object it names is uploaded, a manifest naming each with its sha256,
   under a new name too.
A run killed anywhere leaves at most objects no manifest names; the next run finds them in
the bucket's listing (the listing is trusted over the local record), uploads only what is
missing, and writes the manifest.

Bundles are made one after another in a thread, the largest repository first, and what is
made is sent while the rest is made, up to two uploads at once, each taking everything made
since the last one started (decision 162): making them all before sending any left the
upload idle for as long as git took.

The server's own state (bluegrass.cloud.replica.serverstate) goes up under the
administrator's secret, in a thread beside the users' bundles; a user's manifest waits for
the server's, so that a user's secrets are in the bucket before their data is complete.

With nothing new, one raw listing of the bucket (no key derivation) and one `git
for-each-ref` per segment are all a run costs. An area the raw listing shows empty (a first
upload) is not listed through crypt either: each such listing is an rclone start and a key
derivation.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bluegrass.cloud.datadir import Busy, DataRoot
from bluegrass.cloud.replica import bundles, keys, serverstate
from bluegrass.cloud.replica.keys import CryptSecret
from bluegrass.cloud.replica.manifest import (
    Bundle,
    Manifest,
    ManifestError,
    StoredObject,
    bundle_key,
    highest_seq,
    manifest_seq,
    refs_key,
    sha256_file,
)
from bluegrass.cloud.replica.remote import (
    Bucket,
    Listed,
    ReplicaError,
    ReplicaUnreachable,
    stored_size,
)
from bluegrass.cloud.replica.settings import ReplicaSettings, from_config
from bluegrass.core.config import Config
from bluegrass.core.errors import BluegrassError
from bluegrass.core.store.git import Git

SERVER_AREA = "server"
# A bundle and its refs file are staged (and sent) together in BUNDLES; REFS is where older
# versions staged refs files, only cleaned up now.
BUNDLES, REFS, MANIFESTS = "1-bundles", "2-refs", "3-manifest"
# At most this many uploads of a user's objects at once: one keeps the largest bundle going
# while another sends the smaller ones made meanwhile; more would only share the same CPU
# and link.
UPLOADS_AT_ONCE = 2
# An upload starts once this much is ready (or nothing more is to be made): below it, what a
# run of rclone costs by itself (a start and a key derivation, about 0.12 s, decision 164)
# would send about as much at loopback pace, so a day's small bundles go up in one run.
UPLOAD_AT_LEAST = 8 << 20


@dataclass
class AreaResult:
    """One area's upload: the server's state, or one user's histories."""

    area: str  # "server" or the user's name
    uploaded: int = 0  # objects rclone sent this run
    uploaded_bytes: int = 0
    new_bundles: list[str] = field(default_factory=list)
    manifest: str | None = None  # the manifest written this run
    nothing_new: bool = False

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class ReplicateResult:
    areas: list[AreaResult]
    errors: list[dict[str, str]]
    # The administrator secret's path, said until a run completes the server's state once:
    # a first run that fails (bucket unreachable) must not swallow the only mention of it.
    admin_secret_created: str | None
    seconds: float

    def to_json(self) -> dict[str, object]:
        return {
            "areas": [a.to_json() for a in self.areas],
            "errors": self.errors,
            "admin_secret_created": self.admin_secret_created,
            "seconds": round(self.seconds, 3),
        }


def state_path(data_root: Path, area: str) -> Path:
    return keys.folder(data_root) / "state" / f"{area}.json"


def work_path(data_root: Path, area: str) -> Path:
    return keys.folder(data_root) / "work" / area


class Local:
    """What this server remembers of an area: the last manifest it wrote or read, the raw
    names of that manifest's objects (for the fast check), and bundles or state files made
    but not yet named by a manifest."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.manifest: Manifest | None = None
        self.raw: dict[str, str] = {}
        self.pending: list[dict[str, object]] = []
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("manifest"):
                self.manifest = Manifest.from_json(data["manifest"])
            self.raw = dict(data.get("raw", {}))
            self.pending = list(data.get("pending", []))
        except (OSError, ValueError, ManifestError, AttributeError):
            pass  # no record (or a damaged one): the bucket's listing is the truth anyway

    def save(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        text = json.dumps(
            {
                "manifest": self.manifest.to_json() if self.manifest else None,
                "raw": self.raw,
                "pending": self.pending,
            },
            sort_keys=True,
        )
        temp = self.path.with_name(f".{self.path.name}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        temp.replace(self.path)

    def still_there(self, raw: dict[str, int], prefix: str, encrypt: bool) -> bool:
        """Whether the remembered manifest and all its objects are in the bucket's raw
        listing, at their sizes: the fast path's check, with no key to derive."""
        if self.manifest is None or self.pending:
            return False
        if self.raw.get(self.manifest.key) is None:
            return False
        if f"{prefix}/{self.raw[self.manifest.key]}" not in raw:
            return False
        for obj in self.manifest.objects():
            name = self.raw.get(obj.key)
            if name is None or raw.get(f"{prefix}/{name}") != stored_size(obj.size, encrypt):
                return False
        return True

    def remember(self, manifest: Manifest, listing: dict[str, Listed]) -> None:
        self.manifest = manifest
        self.raw = {
            key: listing[key].raw
            for key in [manifest.key, *(o.key for o in manifest.objects())]
            if key in listing
        }
        self.pending = []
        self.save()


@contextlib.contextmanager
def replica_lock(data_root: Path) -> Iterator[None]:
    """One replicate (or rebuild) at a time: two would race for the same new names."""
    folder = keys.folder(data_root)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    with (folder / "lock").open("a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Busy("a replicate is already running; try again when it is done") from None
        yield


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def replicate(root: DataRoot, cfg: Config, user: str | None = None) -> ReplicateResult:
    """Upload what is new of the server's state and of every user's (or one user's)
    histories. Raise ReplicaUnreachable when the bucket cannot be reached at all; a failure
    of one user is reported in `errors` and the others still go up."""
    started = time.monotonic()
    settings = from_config(cfg)
    bucket = Bucket(settings)
    users = [user] if user else root.users()
    for name in users:
        root.user_dir(name)  # an unknown user is a usage error, said before anything is made
    with replica_lock(root.path):
        admin, made = keys.admin_secret(root.path)
        announce = made or Local(state_path(root.path, SERVER_AREA)).manifest is None
        for name in users:
            keys.user_secret(root.path, name)
        raw = bucket.list_raw()
        areas: list[AreaResult] = []
        errors: list[dict[str, str]] = []
        # The server's state goes up while the users' bundles are made; a failure there
        # fails the run, as before, once the user being worked on stops.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="server-area") as pool:
            server = pool.submit(_server, root, bucket, admin, raw)
            for name in users:
                if server.done() and server.exception() is not None:
                    break
                try:
                    areas.append(_user(root, bucket, settings, name, raw, server.result))
                except ReplicaUnreachable:
                    raise
                except BluegrassError as exc:
                    errors.append({"area": name, "error": str(exc)})
            areas.insert(0, server.result())
    created = str(keys.admin_path(root.path)) if announce else None
    return ReplicateResult(areas, errors, created, time.monotonic() - started)


# -- reading an area's newest complete manifest --------------------------------------------


def latest_manifest(
    bucket: Bucket,
    secret: CryptSecret,
    listing: dict[str, Listed],
    scratch: Path,
    known: Manifest | None = None,
) -> Manifest | None:
    """The newest manifest of the area whose objects are all in the listing at their sizes;
    None if there is none. A manifest is read from the bucket unless it is the one we know."""
    return newest_complete(bucket, secret, listing, scratch, known)[0]


def newest_complete(
    bucket: Bucket,
    secret: CryptSecret,
    listing: dict[str, Listed],
    scratch: Path,
    known: Manifest | None = None,
) -> tuple[Manifest | None, list[str]]:
    """latest_manifest(), and why each newer manifest was passed over. A manifest goes up
    after every object it names, so a newer one that cannot be read or whose objects are
    missing or of another size is damage or a deletion in the bucket, never a killed run."""
    found = sorted(
        ((seq, key) for key in listing if (seq := manifest_seq(key)) is not None), reverse=True
    )
    passed: list[str] = []
    for _seq, key in found:
        if known is not None and known.key == key:
            candidate: Manifest | None = known
        else:
            candidate = read_manifest(bucket, secret, key, scratch)
        if candidate is None:
            passed.append(f"{key} cannot be read (damaged?)")
            continue
        lacking = [
            o.key
            for o in candidate.objects()
            if o.key not in listing or listing[o.key].size != o.size
        ]
        if not lacking:
            return candidate, passed
        shown = ", ".join(lacking[:3]) + (", ..." if len(lacking) > 3 else "")
        passed.append(f"{key} names objects missing or of another size: {shown}")
    return None, passed


def read_manifest(bucket: Bucket, secret: CryptSecret, key: str, scratch: Path) -> Manifest | None:
    shutil.rmtree(scratch, ignore_errors=True)
    bucket.download(secret, [key], scratch)
    try:
        return Manifest.from_json((scratch / key).read_bytes())
    except (OSError, ManifestError):
        return None  # damaged or cut short: not a complete state
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def area_listing(bucket: Bucket, secret: CryptSecret, raw: dict[str, int]) -> dict[str, Listed]:
    """The area's listing through crypt, or none at all when the bucket's raw listing (made
    at the start of this run, under the replica lock) has no object below its prefix."""
    if not any(name.startswith(f"{secret.prefix}/") for name in raw):
        return {}
    return bucket.list(secret)


def complete(manifest: Manifest, listing: dict[str, Listed]) -> bool:
    return all(o.key in listing and listing[o.key].size == o.size for o in manifest.objects())


# -- the server's state --------------------------------------------------------------------


def _server(root: DataRoot, bucket: Bucket, admin: CryptSecret, raw: dict[str, int]) -> AreaResult:
    result = AreaResult(SERVER_AREA)
    local = Local(state_path(root.path, SERVER_AREA))
    work = work_path(root.path, SERVER_AREA)
    fresh = work / "collect"
    shutil.rmtree(fresh, ignore_errors=True)
    names = serverstate.collect(root.path, fresh)
    digests = {name: sha256_file(fresh / name) for name in names}

    def same(state: list[StoredObject]) -> bool:
        return {o.key.rsplit("/", 1)[-1]: o.sha256 for o in state} == digests

    encrypt = bucket.settings.encrypt
    if (
        local.still_there(raw, admin.prefix, encrypt)
        and local.manifest
        and same(local.manifest.state)
    ):
        result.nothing_new = True
        shutil.rmtree(fresh, ignore_errors=True)
        return result
    listing = area_listing(bucket, admin, raw)
    manifest = latest_manifest(bucket, admin, listing, work / "read", local.manifest)
    if manifest is not None and same(manifest.state):
        local.remember(manifest, listing)
        result.nothing_new = True
        shutil.rmtree(fresh, ignore_errors=True)
        return result
    pending = [StoredObject(**o) for o in local.pending]  # type: ignore[arg-type]
    if pending and same(pending):
        objects = pending  # a killed run's set, same content: only what is missing goes up
    else:
        seq = 1 + max(
            [int(k.split("/")[1]) for k in listing if k.startswith("state/")]
            + [manifest_seq(k) or 0 for k in listing],
            default=0,
        )
        # A file unchanged since the last manifest keeps its object: only what changed
        # (the database, mostly) is sent again.
        before = {o.key.rsplit("/", 1)[-1]: o for o in (manifest.state if manifest else [])}
        objects = [
            before[name]
            if name in before and before[name].sha256 == digests[name]
            else StoredObject(
                f"state/{seq:06d}/{name}", digests[name], (fresh / name).stat().st_size
            )
            for name in names
        ]
        local.pending = [asdict(o) for o in objects]
        local.save()
    stage = work / BUNDLES
    shutil.rmtree(stage, ignore_errors=True)
    for obj in objects:
        if obj.key in listing and listing[obj.key].size == obj.size:
            continue
        target = stage / obj.key
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        (fresh / obj.key.rsplit("/", 1)[-1]).replace(target)
    _send(bucket, admin, stage, result)
    seq = 1 + max((manifest_seq(k) or 0 for k in listing), default=0)
    new = Manifest("server", seq, now_text(), state=objects)
    _finish(bucket, admin, work, new, local, result)
    shutil.rmtree(fresh, ignore_errors=True)
    return result


def _send(bucket: Bucket, secret: CryptSecret, stage: Path, result: AreaResult) -> None:
    if not stage.is_dir():
        return
    files = [p for p in stage.rglob("*") if p.is_file()]
    if not files:
        return
    result.uploaded += bucket.upload(secret, stage)
    result.uploaded_bytes += sum(p.stat().st_size for p in files)
    shutil.rmtree(stage, ignore_errors=True)


def _finish(
    bucket: Bucket,
    secret: CryptSecret,
    work: Path,
    manifest: Manifest,
    local: Local,
    result: AreaResult,
) -> None:
    """Upload the manifest, last, then check the bucket holds everything it names."""
    stage = work / MANIFESTS
    shutil.rmtree(stage, ignore_errors=True)
    target = stage / manifest.key
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    target.write_text(manifest.to_json(), encoding="utf-8")
    _send(bucket, secret, stage, result)
    listing = bucket.list(secret)
    if not complete(manifest, listing) or manifest.key not in listing:
        missing = [o.key for o in manifest.objects() if o.key not in listing]
        raise ReplicaError(
            f"after uploading {manifest.key}, the bucket lacks {', '.join(missing) or 'it'}"
        )
    local.remember(manifest, listing)
    result.manifest = manifest.key


# -- one user's histories ------------------------------------------------------------------


def _segment(bundle: Bundle) -> str:
    return bundle.key.split("/", 1)[0]


@dataclass
class _Plan:
    """A bundle to make: decided before any is made, made in the bundle thread."""

    segment: str
    git: Git
    seq: int
    full: bool
    prerequisites: list[str]
    tips: dict[str, str]


def _user(
    root: DataRoot,
    bucket: Bucket,
    settings: ReplicaSettings,
    user: str,
    raw: dict[str, int],
    server_done: Callable[[], object] = lambda: None,
) -> AreaResult:
    result = AreaResult(user)
    secret = keys.user_secret(root.path, user)
    local = Local(state_path(root.path, user))
    work = work_path(root.path, user)
    current: dict[str, dict[str, str]] = {}
    for segment in root.segments(user):
        path = root.repo_path(user, segment)
        if (path / "HEAD").is_file():
            found = bundles.tips(Git(path))
            if found:
                current[segment] = found

    def unchanged(manifest: Manifest | None) -> bool:
        return manifest is not None and all(
            (manifest.segments.get(s) or [None])[-1] is not None
            and manifest.segments[s][-1].tips == tips
            for s, tips in current.items()
        )

    if local.still_there(raw, secret.prefix, settings.encrypt) and unchanged(local.manifest):
        result.nothing_new = True
        return result

    listing = area_listing(bucket, secret, raw)
    manifest = latest_manifest(bucket, secret, listing, work / "read", local.manifest)
    named = {b.key for bs in (manifest.segments.values() if manifest else []) for b in bs}
    stage = work / BUNDLES

    def there(obj: StoredObject) -> bool:
        return obj.key in listing and listing[obj.key].size == obj.size

    # What a killed run made: kept if it is in the bucket or still staged, else forgotten.
    kept: list[Bundle] = []
    for data in local.pending:
        bundle = Bundle(**data)  # type: ignore[arg-type]
        if bundle.key in named:
            continue
        if all(there(o) or (stage / o.key).is_file() for o in bundle.objects()):
            kept.append(bundle)
    waiting: list[str] = []  # staged by a killed run and not in the bucket: sent first
    for bundle in kept:
        for obj in bundle.objects():
            if there(obj):  # uploaded before the kill: never sent again
                (stage / obj.key).unlink(missing_ok=True)
            else:
                waiting.append(obj.key)
    _forget_unrecorded(work, kept)

    plans: list[_Plan] = []
    for segment, tips in sorted(current.items()):
        chain = (manifest.chain(segment) if manifest else []) + [
            b for b in kept if _segment(b) == segment
        ]
        last = chain[-1].tips if chain else {}
        if tips == last:
            continue
        git = Git(root.repo_path(user, segment))
        prerequisites = sorted(set(last.values()))
        since_full = len(chain) - 1 if chain else 0
        full = not chain or since_full >= settings.full_every
        if not full and not bundles.has_commits(git, prerequisites):
            full = True  # the repository lacks what the chain ends with: start a new chain
        if not full:
            for ref, old in last.items():
                if ref in tips and not bundles.descends(git, old, tips[ref]):
                    raise ReplicaError(
                        f"{user}/{segment}: {ref} no longer contains {old[:12]}, which the "
                        "replica holds (history rewritten?); not replicated"
                    )
        taken = [b.seq for b in chain] + [b.seq for b in kept if _segment(b) == segment]
        seq = 1 + max([highest_seq(list(listing), segment), *taken])
        plans.append(_Plan(segment, git, seq, full, [] if full else prerequisites, dict(tips)))

    if not kept and not plans:
        if manifest is not None:
            local.remember(manifest, listing)
        result.nothing_new = True
        return result

    def record(bundle: Bundle) -> None:
        kept.append(bundle)
        result.new_bundles.append(bundle.key)
        local.pending = [asdict(b) for b in kept]
        local.save()  # recorded before it is sent: a kill from here on is resumed

    # The largest repository first: its bundle takes longest to make and to send.
    plans.sort(key=lambda plan: (-bundles.packed_size(plan.git), plan.segment))
    jobs = [lambda plan=plan: _make(user, stage, plan) for plan in plans]
    _make_and_send(bucket, secret, stage, jobs, waiting, record, result)
    result.new_bundles.sort()
    shutil.rmtree(stage, ignore_errors=True)

    segments = {name: list(bs) for name, bs in (manifest.segments if manifest else {}).items()}
    for bundle in sorted(kept, key=lambda b: b.seq):
        segments.setdefault(_segment(bundle), []).append(bundle)
    seq = 1 + max((manifest_seq(k) or 0 for k in listing), default=0)
    new = Manifest("user", seq, now_text(), user=user, segments=segments)
    server_done()  # the server's manifest (with this user's secrets) is up before this one
    _finish(bucket, secret, work, new, local, result)
    return result


def _make(user: str, stage: Path, plan: _Plan) -> Bundle:
    """Make, verify and hash one bundle and its refs file, staged under their keys."""
    kind = "full" if plan.full else "inc"
    key = bundle_key(plan.segment, plan.seq, kind)
    target = stage / key
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    refs = sorted(plan.tips)
    digest = bundles.create(plan.git, target, refs, plan.prerequisites)
    problem = bundles.verify(plan.git, target)
    if problem:
        target.unlink(missing_ok=True)
        raise ReplicaError(f"{user}/{plan.segment}: the new bundle does not verify: {problem}")
    rkey = refs_key(plan.segment, plan.seq)
    refs_file = stage / rkey
    refs_file.write_text("".join(f"{plan.tips[r]} {r}\n" for r in refs), encoding="utf-8")
    return Bundle(
        key=key,
        kind=kind,
        prerequisites=plan.prerequisites,
        tips=plan.tips,
        sha256=digest,
        size=target.stat().st_size,
        refs_key=rkey,
        refs_sha256=sha256_file(refs_file),
        refs_size=refs_file.stat().st_size,
    )


def _make_and_send(
    bucket: Bucket,
    secret: CryptSecret,
    stage: Path,
    jobs: list[Callable[[], Bundle]],
    waiting: list[str],
    record: Callable[[Bundle], None],
    result: AreaResult,
) -> None:
    """Run `jobs` one after another in a thread and send each bundle made (recorded first,
    in this thread) while the next ones are made: whenever fewer than UPLOADS_AT_ONCE
    uploads run and UPLOAD_AT_LEAST bytes are ready (or all are made), one starts with every
    object made and not yet sent (and `waiting`, staged by a killed run). On a failure
    nothing more starts; what runs is let finish (what it sends is recorded, so the next run
    keeps it), then the failure is raised."""
    events: queue.Queue[tuple[str, object]] = queue.Queue()
    stop = threading.Event()

    def make() -> None:
        try:
            for job in jobs:
                if stop.is_set():
                    break
                events.put(("made", job()))
        except BaseException as exc:  # handed over: the coordinating thread raises it
            events.put(("failed", exc))
        finally:
            events.put(("made all", None))

    def send(names: list[str], size: int) -> None:
        try:
            count = bucket.upload(secret, stage, names)
        except BaseException as exc:  # handed over: the coordinating thread raises it
            events.put(("send failed", exc))
            return
        for name in names:
            (stage / name).unlink(missing_ok=True)
        events.put(("sent", (count, size)))

    ready = list(waiting)
    ready_bytes = sum((stage / name).stat().st_size for name in ready)
    making, running = True, 0
    failure: BaseException | None = None
    threads = [threading.Thread(target=make, name="bundles", daemon=True)]
    threads[0].start()
    try:
        while True:
            worth = ready_bytes >= UPLOAD_AT_LEAST or not making
            if failure is None and ready and worth and running < UPLOADS_AT_ONCE:
                names, size, ready, ready_bytes = ready, ready_bytes, [], 0
                thread = threading.Thread(target=send, args=(names, size), daemon=True)
                threads.append(thread)
                thread.start()
                running += 1
                continue
            if not making and running == 0 and (failure is not None or not ready):
                break
            kind, value = events.get()
            if kind == "made":
                assert isinstance(value, Bundle)
                record(value)
                ready += [obj.key for obj in value.objects()]
                ready_bytes += sum(obj.size for obj in value.objects())
            elif kind == "sent":
                running -= 1
                count, size = value  # type: ignore[misc]
                result.uploaded += count
                result.uploaded_bytes += size
            elif kind == "made all":
                making = False
            else:  # "failed" or "send failed"
                running -= kind == "send failed"
                if failure is None:
                    failure = value  # type: ignore[assignment]
                stop.set()
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    if failure is not None:
        raise failure


def _forget_unrecorded(work: Path, kept: list[Bundle]) -> None:
    """Staged files no pending record names (made by a run killed before recording them)."""
    wanted = {o.key for b in kept for o in b.objects()}
    for stage in (BUNDLES, REFS):
        folder = work / stage
        if not folder.is_dir():
            continue
        for path in folder.rglob("*"):
            if path.is_file() and (
                stage != BUNDLES or path.relative_to(folder).as_posix() not in wanted
            ):
                path.unlink()


__all__ = ["ReplicaError", "ReplicaUnreachable", "replicate"]
