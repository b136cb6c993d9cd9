"""The append-only mirror: every segment's history fetched onto the drive, never rewritten.

DRIVE/bluegrass/<user>/<segment>.git is a bare repository whose only remote fetches
`refs/heads/*:refs/heads/*` and `refs/tags/*:refs/tags/*` without `+`, never with --force or
--prune: a history the cloud rewrote is refused by git itself (exit 1, "non-fast-forward"),
the old commits stay, and we raise an alert. Every received object is checked
(transfer.fsckObjects); every ref update is logged in a reflog that never expires.
docs/design.md D6; research gitstore.md §4.1 and §2.2 (memory on a Pi).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from bluegrass.appliance import errors
from bluegrass.appliance.errors import CloudRefused, CloudUnreachable, DriveError
from bluegrass.appliance.runner import Progress, Runner
from bluegrass.appliance.source import Segment, Source
from bluegrass.appliance.state import State
from bluegrass.core.errors import BluegrassError
from bluegrass.core.store.git import git_env, parse_config_list
from bluegrass.core.store.repository import ATTRIBUTES, FORMAT_VERSION

REMOTE = "origin"
REFSPECS = ("refs/heads/*:refs/heads/*", "refs/tags/*:refs/tags/*")

SETTINGS = {
    # Append-only: reflogs for every ref update, kept forever; nothing repacks or prunes
    # behind our back (a surprise repack of a multi-GB pack on a USB drive, or a prune of the
    # objects of a refused rewrite, which are evidence).
    "core.logAllRefUpdates": "always",
    "gc.auto": "0",
    "maintenance.auto": "false",
    "gc.reflogExpire": "never",
    "gc.reflogExpireUnreachable": "never",
    "gc.pruneExpire": "never",
    "gc.worktreePruneExpire": "never",
    # Check every object received (index-pack recomputes ids; fsck checks structure).
    "transfer.fsckObjects": "true",
    # Keep what arrives as a pack (one file per fetch), not thousands of loose files.
    "transfer.unpackLimit": "1",
    # Nobody may push a rewrite into the mirror either.
    "receive.denyNonFastForwards": "true",
    "receive.denyDeletes": "true",
    # Within a Pi's means (research §2.2): stream big blobs, small caches, one thread. Pack
    # mmap windows keep git's 64-bit defaults: mapped pack pages are clean file cache the
    # kernel reclaims, and capping them (16m/128m, the research's 32-bit advice) made every
    # fetch's object checks thrash windows over a large pack (+45% on the Linux tree's
    # incremental fetch; docs/decisions.md).
    "core.bigFileThreshold": "16m",
    "core.deltaBaseCacheLimit": "16m",
    "pack.threads": "1",
    "pack.windowMemory": "32m",
    "pack.deltaCacheSize": "16m",
    # A power cut or a pulled cable must not leave a ref pointing at unwritten objects.
    "core.fsync": "all",
    # Read by bluegrass.core.store.Repository.open, so core's restore works on the mirror.
    "bluegrass.format": FORMAT_VERSION,
}

# Every fetch adds one pack (transfer.unpackLimit=1); past this many, small packs are rolled
# into bigger ones, so object lookups do not slow down year after year of hourly fetches.
MAX_PACKS = 16

# Settings earlier versions wrote and this one removes where it finds them.
RETIRED = ("core.packedGitWindowSize", "core.packedGitLimit", f"remote.{REMOTE}.mirror")


@dataclass
class SegmentResult:
    segment: Segment
    ok: bool
    before: str | None
    after: str | None
    new_commits: int = 0
    message: str = ""
    alert: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "user": self.segment.user,
            "segment": self.segment.name,
            "ok": self.ok,
            "before": self.before,
            "after": self.after,
            "new_commits": self.new_commits,
            "message": self.message,
            "alert": self.alert,
        }


@dataclass
class MirrorReport:
    results: list[SegmentResult] = field(default_factory=list)
    vanished: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def summary(self) -> str:
        failed = [r for r in self.results if not r.ok]
        new = sum(r.new_commits for r in self.results)
        done = len(self.results) - len(failed)
        text = f"{done} of {len(self.results)} histories mirrored, {new} new snapshots"
        if failed:
            # A segment's message may already name it (git's refusals do).
            text += "; failed: " + "; ".join(
                r.message
                if r.message.startswith(f"{r.segment.key}: ")
                else f"{r.segment.key}: {r.message}"
                for r in failed
            )
        return text


def mirror_path(drive_root: Path, user: str, segment: str) -> Path:
    return drive_root / "bluegrass" / user / f"{segment}.git"


class Mirror:
    """One segment's mirror repository on the drive."""

    def __init__(self, path: Path, runner: Runner, extra_config: dict[str, str] | None = None):
        self.path = path
        self.runner = runner
        self.extra_config = extra_config or {}

    def git(self, *args: str, check: bool = True) -> tuple[int, str, str]:
        env = git_env(self.path, _config_env(self.extra_config))
        proc = self.runner.run(["git", *args], env=env, cwd=self.path)
        out = proc.stdout.decode("utf-8", "replace")
        err = proc.stderr.decode("utf-8", "replace")
        if check and proc.returncode != 0:
            raise _git_failure(args[0], err, self.path)
        return proc.returncode, out, err

    def ensure(self, url: str) -> None:
        """Create the repository, or bring its settings up to date; safe to repeat.

        Reads the configuration once and writes only what differs: with core.fsync=all every
        `git config` write is flushed to the drive, and this runs before every mirror.
        """
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            current = self._repair_skeleton()
            if current is None or not self._is_repository():
                # New, or a `git init` cut short by a pulled drive or a power cut. init on an
                # existing repository only adds what is missing; it never overwrites.
                self.git("init", "--quiet", "--bare", "--initial-branch=main", str(self.path))
                current = self._read_config() or {}
            wanted = {
                **SETTINGS,
                f"remote.{REMOTE}.url": url,
                # No "mirror" remote and no "prune": neither may ever be switched on.
                f"remote.{REMOTE}.prune": "false",
                f"remote.{REMOTE}.pruneTags": "false",
            }
            for key, value in wanted.items():
                if current.get(key.lower()) != [value]:
                    self.git("config", "--replace-all", key, value)
            fetch_key = f"remote.{REMOTE}.fetch"
            if current.get(fetch_key) != list(REFSPECS):
                self.git("config", "--unset-all", fetch_key, check=False)
                for spec in REFSPECS:
                    self.git("config", "--add", fetch_key, spec)
            for key in RETIRED:
                if key.lower() in current:
                    self.git("config", "--unset-all", key, check=False)
            info = self.path / "info"
            info.mkdir(exist_ok=True)
            attributes = info / "attributes"
            if not attributes.exists() or attributes.read_text() != ATTRIBUTES:
                _write_synced(attributes, ATTRIBUTES.encode())
        except OSError as exc:
            raise errors.from_os_error(exc, f"setting up {self.path}") from None

    def _read_config(self) -> dict[str, list[str]] | None:
        """The repository's own configuration file, or None if git cannot read it."""
        proc = self.runner.run(
            ["git", "config", "--file", str(self.path / "config"), "--list", "-z"],
            env=git_env(self.path),
        )
        return parse_config_list(proc.stdout) if proc.returncode == 0 else None

    def _is_repository(self) -> bool:
        code, _, _ = self.git("rev-parse", "--git-dir", check=False)
        return code == 0 and all((self.path / n).exists() for n in ("config", "objects", "refs"))

    def _repair_skeleton(self) -> dict[str, list[str]] | None:
        """Undo what a power cut does to a `git init` that was never flushed (seen in tests:
        HEAD or config present but empty). Both hold only what we write anyway: HEAD points
        at main, and ensure() rewrites every setting and the remote right after.

        Returns the configuration as read, or None when there is none to read."""
        head = self.path / "HEAD"
        if head.exists():
            text = head.read_bytes()
            if not (text.startswith(b"ref: refs/") or re.fullmatch(rb"[0-9a-f]{40}\n?", text)):
                _write_synced(head, b"ref: refs/heads/main\n")
        config = self.path / "config"
        if not config.exists():
            return None
        found = self._read_config()
        if found is None or not config.read_bytes().strip():
            config.replace(self.path / f"config.damaged-{int(time.time())}")
            return None
        return found

    def head(self) -> str | None:
        code, out, _ = self.git("rev-parse", "--verify", "--quiet", "refs/heads/main", check=False)
        return out.strip() if code == 0 and out.strip() else None

    def refs(self) -> dict[str, str]:
        _, out, _ = self.git("for-each-ref", "--format=%(objectname) %(refname)")
        return {ref: oid for oid, ref in (line.split(" ", 1) for line in out.splitlines())}

    def clean_leftovers(self) -> list[str]:
        """Remove what an interrupted fetch leaves behind (a pulled drive, a killed job).

        Only temporary pack files (never referenced by anything) and stale ref locks (which
        would block every later fetch). Called with the job lock held, so no git of ours is
        running in this repository.
        """
        removed = []
        for pattern in (
            "objects/pack/tmp_*",
            "objects/pack/.tmp-*",  # a repack's pack in the making
            "objects/incoming-*",
            "objects/tmp_*",
        ):
            for path in self.path.glob(pattern):
                _remove(path)
                removed.append(str(path.relative_to(self.path)))
        for pattern in ("refs/**/*.lock", "logs/**/*.lock", "packed-refs.lock", "*.lock"):
            for path in self.path.glob(pattern):
                if path.is_file():
                    path.unlink()
                    removed.append(str(path.relative_to(self.path)))
        return removed

    def fetch(self) -> tuple[int, str]:
        # Never --force, never --prune; no auto gc or maintenance; the refspecs come from the
        # repository's own configuration.
        code, _, err = self.git(
            "fetch",
            "--no-progress",
            "--no-auto-gc",
            "--no-auto-maintenance",
            "--no-recurse-submodules",
            REMOTE,
            check=False,
        )
        return code, err

    def consolidate(self) -> bool:
        """Roll small packs into bigger ones once more than MAX_PACKS piled up.

        `repack --geometric` packs every object of the packs it merges, reachable or not
        (`pack-objects --stdin-packs`), and -d then removes only those packs: the objects of
        a refused rewrite stay, as evidence. The largest pack is rarely rewritten. Returns
        whether it repacked.
        """
        packs = list((self.path / "objects" / "pack").glob("*.pack"))
        if len(packs) <= MAX_PACKS:
            return False
        self.git("repack", "-d", "-q", "--geometric=2", "--no-write-bitmap-index")
        return True

    def fetched_tip(self, ref: str) -> str | None:
        """The tip the cloud offered for `ref` in the last fetch, even if it was refused."""
        try:
            text = (self.path / "FETCH_HEAD").read_text()
        except OSError:
            return None
        short = ref.removeprefix("refs/heads/")
        for line in text.splitlines():
            if f"branch '{short}' of" in line:
                return line.split("\t", 1)[0]
        return None


def _config_env(config: dict[str, str]) -> dict[str, str]:
    # GIT_CONFIG_COUNT/KEY/VALUE: configuration for this process only, invisible in the
    # command line (ps) and never written into the repository's config file.
    env = {"GIT_CONFIG_COUNT": str(len(config))}
    for i, (key, value) in enumerate(config.items()):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env


_REJECTED = re.compile(r"^\s*!\s*\[rejected\]\s+(\S+)\s+->\s+(\S+)\s+\((.+)\)\s*$", re.M)
_CLOUD_DOWN = (
    "could not resolve host",
    "failed to connect",
    "connection refused",
    "connection timed out",
    "operation timed out",
    "couldn't connect to server",
    "empty reply from server",
    "recv failure",
    "the requested url returned error: 5",
    "remote end hung up unexpectedly",
    "transfer closed with outstanding read data",
)


class HistoryRewriteRefused(BluegrassError):
    pass


class ObjectsRejected(BluegrassError):
    pass


class CloudCopyDamaged(BluegrassError):
    """The cloud sent bytes that do not inflate or hash: its stored copy is damaged."""


CLOUD_DAMAGED = "cloud-damaged"

# What index-pack says (LC_ALL=C) of a pack whose bytes were damaged where the cloud stores
# them: the cloud sends its stored bytes as they are, so the damage arrives here.
_DAMAGED = (
    "pack has bad object",
    "inflate returned",
    "incorrect data check",
    "invalid distance too far back",
    "serious inflate inconsistency",
    "did not receive expected object",
    "unresolved delta",
    "sha1 collision",
    "hash mismatch",
)


def report_cloud_damaged(state: State, key: str, message: str) -> None:
    """The appliance's one place that says "the cloud's copy of this history is damaged"
    (decision 222): an alert on the dashboard, in `status` and `alerts`, counted up while it
    lasts. Notifications hook in here (issue 16 part 1)."""
    state.alert(CLOUD_DAMAGED, key, message)


def _git_failure(command: str, stderr: str, where: Path) -> BluegrassError:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    last = lines[-1] if lines else "no message"
    drive = errors.classify_drive_text(stderr, f"git {command} in {where}")
    if drive:
        return drive
    return BluegrassError(f"git {command} failed in {where}: {last}")


def classify_fetch(stderr: str, segment: Segment, where: Path) -> BluegrassError:
    """What a failed fetch means, from git's own messages (run with LC_ALL=C)."""
    lowered = stderr.lower()
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    last = lines[-1] if lines else "no message"
    rejected = _REJECTED.findall(stderr)
    if rejected:
        refs = ", ".join(f"{dst} ({why})" for _, dst, why in rejected)
        return HistoryRewriteRefused(
            f"{segment.key}: the cloud rewrote history ({refs}); refused, the mirror keeps "
            "the old history"
        )
    if "fsck error" in lowered or re.search(r"^error: object [0-9a-f]+: ", stderr, re.M):
        detail = next((ln for ln in lines if ln.startswith("error: object")), last)
        return ObjectsRejected(
            f"{segment.key}: the cloud sent objects that fail git's checks, nothing was "
            f"taken ({detail})"
        )
    drive = errors.classify_drive_text(stderr, f"fetching {segment.key} into {where}")
    if drive:
        return drive
    if any(t in lowered for t in _DAMAGED):
        detail = next((ln for ln in lines if any(t in ln.lower() for t in _DAMAGED)), last)
        return CloudCopyDamaged(
            f"{segment.key}: the cloud's copy of this history is damaged ({detail}); nothing "
            "was taken and the drive's copy is kept as it was. Repair the cloud from this "
            f"drive: bluegrass-cloud repair {segment.user} {segment.name} --from-drive DRIVE"
        )
    if "returned error: 401" in lowered or "returned error: 403" in lowered:
        return CloudRefused(f"{segment.key}: the cloud refused this device's credentials ({last})")
    if any(t in lowered for t in _CLOUD_DOWN):
        return CloudUnreachable(f"{segment.key}: cannot reach the cloud ({last})")
    return BluegrassError(f"{segment.key}: git fetch failed: {last}")


def mirror_segment(
    drive_root: Path, segment: Segment, source: Source, runner: Runner
) -> SegmentResult:
    path = mirror_path(drive_root, segment.user, segment.name)
    mirror = Mirror(path, runner, source.git_config())
    mirror.ensure(segment.git_url)
    mirror.clean_leftovers()
    before = mirror.head()
    if segment.head is None or segment.head == before:
        # The listing says there is nothing new: no git process talks to the cloud.
        message = "no snapshots on the cloud yet" if segment.head is None else "up to date"
        return SegmentResult(segment, True, before, before, 0, message)
    refs_before = mirror.refs()
    code, stderr = mirror.fetch()
    if code != 0:
        failure = classify_fetch(stderr, segment, path)
        mirror.clean_leftovers()
        if isinstance(failure, HistoryRewriteRefused):
            offered = mirror.fetched_tip("refs/heads/main")
            if offered:
                failure = HistoryRewriteRefused(
                    f"{failure} (kept {before[:12] if before else 'nothing'}, refused "
                    f"{offered[:12]})"
                )
        if isinstance(failure, CloudUnreachable | CloudRefused | DriveError):
            raise failure
        alert = "rewrite" if isinstance(failure, HistoryRewriteRefused) else None
        if isinstance(failure, ObjectsRejected):
            alert = "bad-objects"
        if isinstance(failure, CloudCopyDamaged):
            alert = CLOUD_DAMAGED
        return SegmentResult(segment, False, before, mirror.head(), 0, str(failure), alert)
    after = mirror.head()
    _check_append_only(mirror, refs_before, segment)
    new = 0
    if after and after != before:
        spec = f"{before}..{after}" if before else after
        new = int(mirror.git("rev-list", "--count", spec)[1].strip() or 0)
    message = f"{new} new snapshots"
    try:
        if mirror.consolidate():
            message += "; packs merged"
    except DriveError:
        raise
    except BluegrassError as exc:
        # The history is mirrored; only the tidying failed. Said, not fatal.
        mirror.clean_leftovers()
        message += f"; merging packs failed ({exc})"
    return SegmentResult(segment, True, before, after, new, message)


def _check_append_only(mirror: Mirror, before: dict[str, str], segment: Segment) -> None:
    """Belt and braces: git's refspecs already refuse a rewrite; prove no ref went back."""
    after = mirror.refs()
    for ref, old in before.items():
        new = after.get(ref)
        if new is None:
            raise BluegrassError(f"{segment.key}: {ref} disappeared from the mirror")
        if new != old:
            code, _, _ = mirror.git("merge-base", "--is-ancestor", old, new, check=False)
            if code != 0:
                raise BluegrassError(f"{segment.key}: {ref} moved off its history")


def mirror_all(
    drive_root: Path,
    source: Source,
    runner: Runner,
    state: State,
    progress: Progress | None = None,
) -> MirrorReport:
    """Mirror every segment the source lists. Cloud and drive failures end the job (the
    daemon backs off, or waits for the drive); any other failure is one segment's."""
    segments = source.segments()
    report = MirrorReport()
    for done, segment in enumerate(segments):
        runner.check()
        if progress is not None:
            progress(done, len(segments), f"mirroring {segment.key}")
        try:
            result = mirror_segment(drive_root, segment, source, runner)
        except (CloudUnreachable, CloudRefused, DriveError):
            raise
        except OSError as exc:
            raise errors.from_os_error(exc, f"mirroring {segment.key}") from None
        except errors.Cancelled:
            raise
        except BluegrassError as exc:
            result = SegmentResult(segment, False, None, None, 0, str(exc))
        report.results.append(result)
        state.segment_result(
            segment.user, segment.name, "mirror", result.ok, result.after, result.message
        )
        if result.alert == CLOUD_DAMAGED:
            report_cloud_damaged(state, segment.key, result.message)
        elif result.alert:
            state.alert(result.alert, segment.key, result.message)
    report.vanished = _vanished(drive_root, segments, {s.user for s in segments})
    for key in report.vanished:
        state.alert(
            "segment-gone",
            key,
            f"{key} is no longer listed by the cloud; its mirror on the drive is kept",
        )
    return report


def _vanished(drive_root: Path, segments: list[Segment], users: set[str]) -> list[str]:
    listed = {s.key for s in segments}
    gone = []
    for user in sorted(users):
        folder = drive_root / "bluegrass" / user
        if folder.is_dir():
            for repo in sorted(folder.glob("*.git")):
                key = f"{user}/{repo.name[: -len('.git')]}"
                if key not in listed:
                    gone.append(key)
    return gone


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        for child in path.iterdir():
            _remove(child)
        path.rmdir()
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _write_synced(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}")
    with tmp.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(path)
