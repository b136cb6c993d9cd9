"""A Bluegrass repository: one bare git repository holding the history of one segment.

Each snapshot is a commit on refs/heads/main whose tree holds `files/` (the user's tree,
names escaped by bluegrass.core.store.escaping) and `bluegrass-manifest` (bluegrass.core.store
.manifest). docs/repository-format.md is the full description.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from bluegrass.core.errors import BluegrassError
from bluegrass.core.store import manifest as mf
from bluegrass.core.store.git import Git, GitError, parse_config_list

BRANCH = "refs/heads/main"
MANIFEST = "bluegrass-manifest"
FILES = "files"
ZERO_OID = "0" * 40
FORMAT_VERSION = "1"
MAX_PACKS = 8
# A temporary object or pack file nobody wrote to for this long is a killed writer's.
LEFTOVER_IDLE = 3600.0
# git's lock files for the steps a commit runs under our repository lock: the temporary
# index (update-index, write-tree) and the branch (update-ref, which locks HEAD too: HEAD
# points to the branch and its reflog is written alongside).
STALE_LOCKS = ("bluegrass/index.tmp.lock", "refs/heads/main.lock", "HEAD.lock")
# Highest precedence of all attribute sources: nothing in a user's tree (a .gitattributes
# asking for eol=crlf, an LFS filter, export-ignore) can change what is stored or archived.
ATTRIBUTES = (
    "* -text -eol -crlf -filter -ident -working-tree-encoding -export-ignore -export-subst\n"
)
SETTINGS = {
    # Blobs above this are streamed and never delta-compressed: a multi-GB file costs a few
    # MB of memory to add, pack, archive or fsck here, and to index-pack on a Pi later.
    "core.bigFileThreshold": "32m",
    "core.logAllRefUpdates": "always",
    "core.fsync": "reference,pack,pack-metadata,commit-graph",
    "gc.auto": "0",
    "gc.reflogExpire": "never",
    "gc.reflogExpireUnreachable": "never",
    "receive.denyNonFastForwards": "true",
    "receive.denyDeletes": "true",
    "http.getanyfile": "false",
    "http.receivepack": "false",
    "uploadpack.allowReachableSHA1InWant": "true",
    "bluegrass.format": FORMAT_VERSION,
}


class RepositoryError(BluegrassError):
    pass


@dataclass
class MaintainResult:
    removed: int = 0  # temporary files killed commits or repacks left
    bytes_freed: int = 0


class RepositoryBusy(RepositoryError):
    """Another process holds the repository's lock (a snapshot or maintenance is running)."""


@dataclass
class CommitInfo:
    commit: str
    date: datetime
    summary: str
    stats: dict[str, int | str] = field(default_factory=dict)

    @property
    def suspicious(self) -> bool:
        return self.stats.get("suspicious") == "yes"

    def to_json(self) -> dict[str, object]:
        return {
            "commit": self.commit,
            "date": self.date.isoformat(),
            "summary": self.summary,
            **{k.replace("-", "_"): v for k, v in self.stats.items() if k != "suspicious"},
            "suspicious": self.suspicious,
        }


class Repository:
    def __init__(self, path: Path) -> None:
        # git runs with the repository as its working directory: a relative path would be
        # taken relative to itself.
        self.path = path.absolute()
        self.git = Git(self.path)

    # -- creating and opening -------------------------------------------------------------

    @classmethod
    def init(cls, path: Path) -> Repository:
        """Create the repository (or bring an existing one's settings up to date)."""
        if path.exists() and any(path.iterdir()) and not (path / "HEAD").exists():
            raise RepositoryError(f"{path} exists and is not a git repository")
        path.mkdir(parents=True, exist_ok=True)
        repo = cls(path)
        if not (path / "HEAD").exists():
            repo.git.run(["init", "--quiet", "--bare", "--initial-branch=main", str(repo.path)])
        repo.apply_settings()
        return repo

    @classmethod
    def open(cls, path: Path) -> Repository:
        repo = cls(path)
        if not (path / "HEAD").is_file():
            raise RepositoryError(f"no repository at {path}")
        found = repo.git.run(["config", "--get", "bluegrass.format"], check=False)
        if found.stdout.strip().decode() != FORMAT_VERSION:
            raise RepositoryError(f"{path} is not a Bluegrass repository (format {FORMAT_VERSION})")
        return repo

    def apply_settings(self) -> None:
        """Make the settings and attributes what they must be; writes only what differs."""
        current = parse_config_list(self.git.run(["config", "--local", "--list", "-z"]).stdout)
        for key, value in SETTINGS.items():
            if current.get(key.lower()) != [value]:
                self.git.run(["config", "--replace-all", key, value])
        attributes = self.path / "info" / "attributes"
        if not attributes.is_file() or attributes.read_text() != ATTRIBUTES:
            attributes.parent.mkdir(exist_ok=True)
            attributes.write_text(ATTRIBUTES)
        self.state_dir.mkdir(exist_ok=True)

    @property
    def state_dir(self) -> Path:
        """Bluegrass's own files beside git's: lock, stat cache, check log. Not replicated."""
        return self.path / "bluegrass"

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """One writer at a time; a second snapshot of the same segment fails at once."""
        self.state_dir.mkdir(exist_ok=True)
        handle = (self.state_dir / "lock").open("a+b")
        try:
            try:
                import fcntl

                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise RepositoryBusy(f"{self.path} is busy: another snapshot is running") from exc
            except ImportError:
                pass
            self._remove_stale_locks()
            yield
        finally:
            handle.close()

    def _remove_stale_locks(self) -> None:
        """Remove the git lock files a killed commit leaves behind (decision 70).

        Only our own writers, each under this repository's lock, ever take these: holding it,
        no process of ours can be in the middle of that step, so a lock file still there is
        a dead one, and it would make every later commit fail.
        """
        for name in STALE_LOCKS:
            (self.path / name).unlink(missing_ok=True)

    # -- reading --------------------------------------------------------------------------

    def head(self) -> str | None:
        proc = self.git.run(["rev-parse", "--verify", "--quiet", BRANCH + "^{commit}"], check=False)
        return proc.stdout.decode().strip() or None

    def commit_date(self, commit: str) -> datetime:
        # Read the commit object itself: `git show -s` still diffs a root commit against the
        # empty tree, opening every tree object of a fresh 78k-file snapshot (0.1-0.25 s).
        raw = self.git.run(["cat-file", "commit", commit]).stdout
        for line in raw.split(b"\n"):
            if line.startswith(b"committer "):
                stamp, offset = line.rsplit(b" ", 2)[1:]
                sign = -1 if offset.startswith(b"-") else 1
                minutes = int(offset[1:3]) * 60 + int(offset[3:5])
                zone = timezone(sign * timedelta(minutes=minutes))
                return datetime.fromtimestamp(int(stamp), zone)
            if not line:
                break
        raise RepositoryError(f"{self.path}: commit {commit[:12]} has no committer line")

    def read_blob(self, spec: str) -> bytes:
        return self.git.run(["cat-file", "blob", spec]).stdout

    def manifest(self, commit: str) -> dict[bytes, mf.Entry]:
        try:
            return mf.parse(self.read_blob(f"{commit}:{MANIFEST}"))
        except mf.ManifestError as exc:
            raise RepositoryError(f"{self.path}: commit {commit[:12]}: {exc}") from exc

    def log(self) -> list[CommitInfo]:
        if self.head() is None:
            return []
        raw = self.git.run(
            [
                "log",
                "--first-parent",
                "-z",
                "--format=%H%x1f%cI%x1f%s%x1f%(trailers:only,unfold)",
                BRANCH,
            ]
        ).stdout.decode("utf-8", "replace")
        commits = []
        for record in raw.split("\0"):
            if not record.strip():
                continue
            oid, date, summary, trailers = record.split("\x1f", 3)
            stats: dict[str, int | str] = {}
            for line in trailers.splitlines():
                key, _, value = line.partition(": ")
                if key.startswith("Bluegrass-"):
                    name = key[len("Bluegrass-") :].lower()
                    stats[name] = int(value) if value.isdigit() else value
            commits.append(CommitInfo(oid.strip(), datetime.fromisoformat(date), summary, stats))
        return commits

    def resolve(self, at: str | None) -> str:
        """The commit for `--at`: a commit id, or the newest snapshot at or before a date."""
        head = self.head()
        if head is None:
            raise RepositoryError(f"{self.path} has no snapshots yet")
        if at is None:
            return head
        if re.fullmatch(r"[0-9a-fA-F]{4,40}", at):
            found = (
                self.git.run(["rev-parse", "--verify", "--quiet", f"{at}^{{commit}}"], check=False)
                .stdout.decode()
                .strip()
            )
            if found:
                ancestry = self.git.run(["merge-base", "--is-ancestor", found, head], check=False)
                if ancestry.returncode == 0:
                    return found
                raise RepositoryError(f"commit {at} is not part of this segment's history")
        when = parse_date(at)
        found = self.git.out(
            ["rev-list", "-1", "--first-parent", f"--before={int(when.timestamp())}", head]
        )
        # git reads a limit up to 1970-01-02 (and any before 1970) as none at all and answers
        # with the newest snapshot, so its answer is checked against the date asked for.
        if found and int(self.git.out(["show", "-s", "--format=%ct", found])) > when.timestamp():
            found = ""
        if not found:
            first = self.git.out(["rev-list", "--max-parents=0", "--format=%cI", head]).splitlines()
            since = first[-1] if first else "unknown"
            raise RepositoryError(
                f"no snapshot at or before {when.isoformat()}: the first is from {since}"
            )
        return found

    # -- checks log ---------------------------------------------------------------------

    def record_check(self, record: dict[str, object]) -> None:
        with (self.state_dir / "checks.jsonl").open("a", encoding="utf-8") as out:
            out.write(json.dumps(record, sort_keys=True) + "\n")

    def checks(self) -> list[dict[str, object]]:
        path = self.state_dir / "checks.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    # -- upkeep ---------------------------------------------------------------------------

    def maintain(self) -> MaintainResult:
        """Pack loose objects and refresh the commit-graph (with path Bloom filters for log).

        Call with the repository lock held. Loose objects go into one new pack first
        (`repack -d`: on the 78k-file tree 77 s and 199 MB, where a geometric repack took
        190 s and 320 MB); the packs are merged geometrically only once enough of them piled
        up, so old packs are rarely rewritten.
        """
        result = self.remove_leftovers()
        self.git.run(["repack", "-d", "-q"])
        packs = list((self.path / "objects" / "pack").glob("*.pack"))
        if len(packs) > MAX_PACKS:
            self.git.run(["repack", "-d", "-q", "--geometric=2"])
        if self.head() is not None:
            self.git.run(
                ["commit-graph", "write", "--reachable", "--changed-paths", "--no-progress"]
            )
        return result

    def remove_leftovers(self, written_since: float | None = None) -> MaintainResult:
        """Delete the temporary object and pack files of killed commits and repacks.

        Call with the repository lock held: then no writer of ours is running. Only files
        nobody wrote to for LEFTOVER_IDLE seconds go (decision 71): a writer outside our lock
        (an administrator's own git command) keeps touching the file it is writing. A commit
        that failed passes `written_since`, its start: then what it wrote itself goes.
        """
        result = MaintainResult()
        objects = self.path / "objects"
        found = [*objects.glob("tmp_obj_*"), *objects.glob("??/tmp_obj_*")]
        found += [*objects.glob("pack/tmp_*"), *objects.glob("pack/.tmp-*")]
        cutoff = time.time() - LEFTOVER_IDLE
        for path in found:
            try:
                st = path.lstat()
                if written_since is not None:
                    if st.st_mtime < written_since:
                        continue
                elif st.st_mtime >= cutoff:
                    continue
                path.unlink()
            except FileNotFoundError:
                continue
            result.removed += 1
            result.bytes_freed += st.st_size
        return result

    def verify(self) -> list[str]:
        """Every problem found, one line each; an empty list means the repository is sound."""
        problems: list[str] = []
        for key, value in SETTINGS.items():
            found = self.git.run(["config", "--get", key], check=False).stdout.decode().strip()
            if found != value:
                problems.append(f"setting {key} is {found or 'unset'!r}, expected {value!r}")
        attributes = self.path / "info" / "attributes"
        if not attributes.exists() or attributes.read_text() != ATTRIBUTES:
            problems.append("info/attributes does not neutralise the tree's own attributes")
        fsck = self.git.run(
            ["fsck", "--full", "--strict", "--no-dangling", "--no-progress"], check=False
        )
        if fsck.returncode != 0:
            text = (fsck.stdout + fsck.stderr).decode("utf-8", "replace").splitlines()
            problems += [f"fsck: {line}" for line in text if line.strip()] or ["fsck failed"]
            return problems
        head = self.head()
        if head is not None:
            problems += self._verify_manifest(head)
        return problems

    def _verify_manifest(self, commit: str) -> list[str]:
        from bluegrass.core.store.escaping import escape_path

        try:
            entries = self.manifest(commit)
        except (RepositoryError, GitError) as exc:
            return [str(exc)]
        listing = self.git.run(["ls-tree", "-r", "-z", "--full-tree", commit, "--", FILES]).stdout
        tree: dict[bytes, tuple[str, str]] = {}
        for record in listing.split(b"\0"):
            if record:
                meta, path = record.split(b"\t", 1)
                mode, _, oid = meta.decode().split(" ")
                tree[path[len(FILES) + 1 :]] = (mode, oid)
        problems = []
        for path, entry in entries.items():
            if entry.kind == "d":
                continue
            stored = tree.pop(escape_path(path), None)
            if stored != (entry.git_mode, entry.oid):
                problems.append(f"commit {commit[:12]}: {path!r} differs between manifest and tree")
        for path in tree:
            problems.append(
                f"commit {commit[:12]}: {path!r} is in the tree but not in the manifest"
            )
        return problems


DATE_FORMATS = "YYYY-MM-DD, YYYY-MM-DD HH:MM[:SS] or ISO 8601 with a time zone"


def parse_date(text: str) -> datetime:
    """A date from the command line; a bare day means the end of that day, local time."""
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            day = datetime.fromisoformat(text)
            return day.replace(hour=23, minute=59, second=59).astimezone()
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise RepositoryError(
            f"not a commit or a date: {text!r} (expected {DATE_FORMATS})"
        ) from exc
    return when.astimezone() if when.tzinfo is None else when


def now() -> datetime:
    return datetime.now(UTC).astimezone()
