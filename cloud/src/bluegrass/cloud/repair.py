"""Healing a damaged repository from another copy of its history (issue 16 part 6).

The good copy (a Pi drive's mirror, or a history rebuilt from the replica's bundles) is
fetched into a new repository beside the damaged one; then whatever the damaged one has
beyond the good copy (snapshots the Pi or the replica has not taken yet) is fetched from it,
one snapshot at a time, oldest first: git checks every object it receives, so a damaged one
stops there and the snapshots from it on are named, not silently dropped. The new repository
must pass a full verify before it takes the damaged one's place; the damaged one is kept
beside it, renamed, and the damage mark goes with it (decision 223).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bluegrass.cloud import corruption
from bluegrass.cloud.datadir import DataRoot
from bluegrass.cloud.replica import bundles
from bluegrass.core.errors import BluegrassError, UsageError
from bluegrass.core.store import Repository, damage
from bluegrass.core.store.git import Git, GitError
from bluegrass.core.store.repository import BRANCH

# Never `*.git`: every command that walks the repositories (verify, maintain) globs that.
STAGING = ".{segment}.repairing"
KEPT = ".{segment}.damaged-{stamp}"


class SnapshotsWouldBeLost(BluegrassError):
    """Healing would lose snapshots only the damaged repository had; refused without --force."""


@dataclass
class LostSnapshot:
    commit: str
    date: str  # "" when even the commit cannot be read


@dataclass
class RepairResult:
    user: str
    segment: str
    source: str  # what the good copy was: the drive's mirror path, or "the replica"
    problems: list[str]  # what was wrong before
    source_head: str
    head: str  # the repaired repository's main
    kept_beyond_source: int  # snapshots only the cloud had, kept
    lost: list[LostSnapshot] = field(default_factory=list)  # dropped (only with --force)
    damaged_copy: str = ""  # where the damaged repository was put aside
    seconds: float = 0.0

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "seconds": round(self.seconds, 3)}


def require_repository(root: DataRoot, user: str, segment: str) -> Path:
    """Given a user's segment, return its repository's path; UsageError if there is none."""
    if user not in root.users():
        raise UsageError(f"unknown user {user!r}")
    path = root.repo_path(user, segment)
    if not (path / "HEAD").is_file():
        raise UsageError(f"unknown segment {user}/{segment}: no history at {path}")
    return path


def damage_found(root: DataRoot, user: str, segment: str, even_if_sound: bool) -> list[str]:
    """Given a user's segment, return what is wrong with its repository: the mark's, else
    what the object check or a verify finds (then marked). UsageError if it is sound and
    `even_if_sound` is not given."""
    path = require_repository(root, user, segment)
    known = damage.read_mark(path)
    if known is not None:
        return known.problems
    problems = damage.check_objects(path) or [
        p for p in Repository.open(path).verify() if p.startswith("fsck: ")
    ]
    if problems:
        corruption.report_damaged(root, user, segment, problems, "repair")
        return problems
    if not even_if_sound:
        raise UsageError(
            f"{user}/{segment} is not damaged (no damage mark, and verify finds nothing); "
            "nothing repaired (give --even-if-sound to rebuild it from the other copy anyway)"
        )
    return []


def repair(
    root: DataRoot,
    user: str,
    segment: str,
    source: Path,
    source_name: str,
    problems: list[str],
    *,
    env: Mapping[str, str] | None = None,
    force: bool = False,
) -> RepairResult:
    """Given a user's damaged segment and a good copy of its history (a git repository, read
    with `env`), heal the segment's repository and return what was done. Raise
    SnapshotsWouldBeLost (naming them) if snapshots only the damaged repository had cannot
    be kept and `force` is not given, BluegrassError if the result does not pass verify."""
    started = time.monotonic()
    name = f"{user}/{segment}"
    damaged_path = root.repo_path(user, segment)
    staging = damaged_path.parent / STAGING.format(segment=segment)
    shutil.rmtree(staging, ignore_errors=True)  # a repair killed before
    try:
        source_tips = bundles.tips(Git(source), env)
    except GitError as exc:
        raise BluegrassError(f"{name}: {source_name} cannot be read: {exc}") from None
    source_head = source_tips.get(BRANCH, "")
    if not source_head:
        raise BluegrassError(f"{name}: {source_name} holds no snapshot of this segment")
    result = RepairResult(user, segment, source_name, problems, source_head, "", 0)
    try:
        fixed = Repository.init(staging)
        try:
            bundles.fetch(fixed.git, source, sorted(source_tips), env)
        except GitError as exc:
            raise BluegrassError(f"{name}: {source_name} cannot be fetched: {exc}") from None
        beyond, lost = _beyond(fixed, damaged_path, source_head, name, source_name)
        result.kept_beyond_source = _keep(fixed, damaged_path, beyond, lost)
        result.lost = lost
        if lost and not force:
            shown = ", ".join(f"{s.commit[:12]} ({s.date or 'unreadable'})" for s in lost)
            raise SnapshotsWouldBeLost(
                f"{name}: {len(lost)} snapshot(s) only the cloud had cannot be recovered "
                f"(their objects are damaged): {shown}; nothing changed (give --force to "
                "repair without them; the damaged repository is kept aside either way)"
            )
        # A lost snapshot's reflog entries would name commits this history no longer has
        # (fsck counts those as broken): then git's own log of the fetches stands instead.
        _carry_state(damaged_path, staging, reflogs=not lost)
        problems_after = fixed.verify()
        if problems_after:
            raise BluegrassError(
                f"{name}: the repaired history fails verify ({problems_after[0]}); nothing "
                "changed, the repository stays marked damaged"
            )
        result.head = fixed.head() or ""
        result.damaged_copy = str(_swap(root, user, segment, damaged_path, staging))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    corruption.cleared(
        root, user, segment, f"repaired from {source_name}; verify passes at {result.head[:12]}"
    )
    result.seconds = time.monotonic() - started
    return result


def _beyond(
    fixed: Repository, damaged: Path, source_head: str, name: str, source_name: str
) -> tuple[list[str], list[LostSnapshot]]:
    """The damaged repository's snapshots after the good copy's head, oldest first; and, when
    even its history cannot be listed, every snapshot after the good copy's as lost."""
    git = Git(damaged)
    head = git.run(["rev-parse", "--verify", "--quiet", BRANCH], check=False)
    tip = head.stdout.decode().strip()
    if not tip or tip == source_head:
        return [], []
    if fixed.git.run(["cat-file", "-e", f"{tip}^{{commit}}"], check=False).returncode == 0:
        return [], []  # the good copy is ahead (or equal): it has every snapshot the cloud had
    listed = git.run(
        ["rev-list", "--first-parent", "--reverse", f"^{source_head}", tip], check=False
    )
    if listed.returncode != 0:
        if git.run(["cat-file", "-e", f"{source_head}^{{commit}}"], check=False).returncode:
            raise BluegrassError(
                f"{name}: {source_name} has snapshots the cloud never had ({source_head[:12]}): "
                "it is not a copy of this history; nothing changed"
            )
        return [], [LostSnapshot(tip, "")]
    commits = listed.stdout.decode().split()
    return commits, []


def _keep(fixed: Repository, damaged: Path, commits: list[str], lost: list[LostSnapshot]) -> int:
    """Fetch the snapshots one by one (oldest first) from the damaged repository; the first
    that cannot be fetched and every later one go into `lost`. Returns how many were kept."""
    kept = 0
    for i, commit in enumerate(commits):
        proc = fixed.git.run(
            ["fetch", "--quiet", "--no-tags", str(damaged), f"{commit}:{BRANCH}"], check=False
        )
        if proc.returncode != 0:
            for gone in commits[i:]:
                lost.append(LostSnapshot(gone, _date(damaged, gone)))
            break
        kept += 1
    return kept


def _date(repo: Path, commit: str) -> str:
    proc = Git(repo).run(["show", "-s", "--format=%cI", commit], check=False)
    return proc.stdout.decode().strip() if proc.returncode == 0 else ""


def _carry_state(damaged: Path, fixed: Path, *, reflogs: bool) -> None:
    """Bluegrass's own files (stat cache, check log) and git's reflogs go with the history;
    the damage mark and the lock stay with the damaged copy."""
    state = damaged / "bluegrass"
    if state.is_dir():
        for entry in state.iterdir():
            if entry.name in (damage.MARK, "lock") or not entry.is_file():
                continue
            shutil.copy2(entry, fixed / "bluegrass" / entry.name)
    if reflogs and (damaged / "logs").is_dir():
        shutil.rmtree(fixed / "logs", ignore_errors=True)
        shutil.copytree(damaged / "logs", fixed / "logs")


def _swap(root: DataRoot, user: str, segment: str, damaged: Path, fixed: Path) -> Path:
    """Put the repaired repository in the damaged one's place while no commit of the user's
    runs (their lock, then the repository's own); return where the damaged one went."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = damaged.parent / KEPT.format(segment=segment, stamp=stamp)
    with root.user_lock(user, exclusive=True), Repository(damaged).lock():
        damaged.rename(aside)
        fixed.rename(damaged)
    return aside
