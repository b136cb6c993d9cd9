"""A cloud rebuilt from a Pi's drive: an empty data root (its configuration at most) filled
with every user's histories, from the drive's git mirrors, and live files, from the drive's
copy of the latest files, ready for `run`.

The drive (docs/appliance.md, "The drive") holds, per user and segment, `<segment>.git` (an
append-only mirror of the history), `<segment>/` (the latest files, pulled every 15 minutes,
links as real symlinks) and `<segment>.meta/` (the devices' metadata sidecars). It holds no
accounts, no host key and no device secrets: the users are made again from the drive's
folder names, with a new host key and TLS key, and every device enrolls again (decision 153).

Built through the same staging folder as a rebuild from the replica (rebuild.staged).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bluegrass.cloud import hostkey, settings, tlskey
from bluegrass.cloud.accounts import Accounts
from bluegrass.cloud.datadir import DataRoot
from bluegrass.cloud.liverestore import LINK_SUFFIX, restore_live
from bluegrass.cloud.replica import bundles
from bluegrass.cloud.replica.rebuild import check_history, refuse_unless_empty, staged
from bluegrass.core import names, syncmeta, syncspec
from bluegrass.core.errors import BluegrassError, UsageError
from bluegrass.core.store import Repository
from bluegrass.core.store.git import Git, GitError
from bluegrass.core.store.manifest import ROOT

# bluegrass.appliance.drive.MARKER and the drive's layout, named here: the cloud never
# imports the appliance.
DRIVE_MARKER = ".bluegrass-drive"
DRIVE_FOLDER = "bluegrass"
MIRROR_SUFFIX = ".git"
SIDECARS_SUFFIX = ".meta"

# Where a segment's live files came from.
FROM_DRIVE = "drive copy"
FROM_SNAPSHOT = "newest snapshot"


@dataclass
class DriveSegment:
    user: str
    segment: str
    head: str  # "" when the drive has the segment's files but no history yet
    live: str  # FROM_DRIVE or FROM_SNAPSHOT
    live_files: int


@dataclass
class DriveRebuildResult:
    data: str
    drive: str
    drive_id: str
    users: list[str]
    host_key: str
    tls_pin: str
    segments: list[DriveSegment] = field(default_factory=list)
    # What the drive held that is not brought back (a special file, a stray name).
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "seconds": round(self.seconds, 3)}


@dataclass(frozen=True)
class _Segment:
    mirror: Path | None
    files: Path | None
    sidecars: Path | None


def drive_id_of(drive: Path) -> str:
    """The marker's id; a one-line refusal for anything that is not a Bluegrass drive."""
    if not drive.is_dir():
        raise UsageError(f"{drive} is not a folder; give the Pi drive's mount point")
    try:
        data = json.loads((drive / DRIVE_MARKER).read_bytes())
    except (OSError, ValueError):
        data = None
    if not isinstance(data, dict) or data.get("bluegrass_drive") != 1:
        raise UsageError(
            f"{drive} is not a Bluegrass drive (no readable {DRIVE_MARKER} marker); give the "
            "Pi drive's mount point"
        )
    if not (drive / DRIVE_FOLDER).is_dir():
        raise UsageError(f"{drive} holds no {DRIVE_FOLDER}/ folder: the Pi has copied nothing yet")
    return str(data.get("id", ""))


def _survey(drive: Path, warnings: list[str]) -> dict[str, dict[str, _Segment]]:
    """{user: {segment: what the drive holds of it}}; names that cannot be a user or a
    segment are warned about, never guessed at."""
    found: dict[str, dict[str, _Segment]] = {}
    for entry in sorted((drive / DRIVE_FOLDER).iterdir()):
        if entry.is_symlink() or not entry.is_dir() or not names.is_valid(entry.name):
            warnings.append(f"{DRIVE_FOLDER}/{entry.name}: not a user's folder, left out")
            continue
        parts: dict[str, dict[str, Path]] = {}
        for item in sorted(entry.iterdir()):
            name, kind = item.name, "files"
            for suffix, what in ((MIRROR_SUFFIX, "mirror"), (SIDECARS_SUFFIX, "sidecars")):
                if name.endswith(suffix):
                    name, kind = name[: -len(suffix)], what
            if item.is_symlink() or not item.is_dir() or not names.is_valid(name):
                warnings.append(f"{DRIVE_FOLDER}/{entry.name}/{item.name}: not a segment, left out")
                continue
            parts.setdefault(name, {})[kind] = item
        found[entry.name] = {
            seg: _Segment(p.get("mirror"), p.get("files"), p.get("sidecars"))
            for seg, p in parts.items()
            if "mirror" in p or "files" in p
        }
    return found


def rebuild_from_drive(root: DataRoot, drive: Path) -> DriveRebuildResult:
    started = time.monotonic()
    drive = drive.absolute()
    drive_id = drive_id_of(drive)
    if root.path.exists() and not root.path.is_dir():
        raise UsageError(f"{root.path} exists and is not a folder")
    if root.path.is_dir():
        refuse_unless_empty(root, (), "rebuild --from-drive")
    if root.path.resolve().is_relative_to(drive.resolve()):
        raise UsageError(f"{root.path} is on the drive itself; choose a data root elsewhere")
    warnings: list[str] = []
    survey = _survey(drive, warnings)
    if not survey:
        raise UsageError(f"{drive}/{DRIVE_FOLDER} holds no user's folder: nothing to rebuild")
    root.path.mkdir(parents=True, exist_ok=True)
    config = root.path / settings.FILENAME
    if not config.exists():
        config.write_text(settings.default_text())
    settings.load(root.path)  # a broken configuration stops us before anything is built
    result = DriveRebuildResult(str(root.path), str(drive), drive_id, sorted(survey), "", "")
    result.warnings = warnings
    with staged(root) as built:
        # New keys: the drive has none of the old ones (decision 153).
        hostkey.ensure(built.path)
        tlskey.ensure(built.path)
        with Accounts.open(built.path) as accounts, accounts.transaction():
            for user in survey:
                accounts.add_user(user)
        for user, segments in survey.items():
            (built.files / user).mkdir()
            for segment, held in sorted(segments.items()):
                result.segments.append(_segment(built, user, segment, held, result.warnings))
        result.host_key = hostkey.public_line(built.path)
        result.tls_pin = tlskey.pin(built.path)
    result.seconds = time.monotonic() - started
    return result


def _segment(
    built: DataRoot, user: str, segment: str, held: _Segment, warnings: list[str]
) -> DriveSegment:
    name = f"{user}/{segment}"
    head = ""
    repo = None
    if held.mirror is not None:
        config = built.path / "mirror.gitconfig"
        env = safe_to_read(held.mirror, config)
        try:
            tips = bundles.tips(Git(held.mirror), env)
            if tips:
                repo = Repository.init(built.repo_path(user, segment))
                # Fast-forward only, branches only: a rewrite the mirror refused (kept in its
                # FETCH_HEAD as evidence) never comes along.
                bundles.fetch(repo.git, held.mirror, sorted(tips), env)
        except GitError as exc:
            raise BluegrassError(f"{name}: the drive's mirror cannot be read: {exc}") from None
        finally:
            config.unlink()
        if repo is not None:
            if bundles.tips(repo.git) != tips:
                raise BluegrassError(f"{name}: the rebuilt branches are not the mirror's")
            head = check_history(repo, name)
    live = built.live_tree(user, segment)
    live.mkdir()
    files = held.files
    if files is not None and repo is not None and not _has_entries(files):
        # An empty copy beside a history is a pull that never got through (the Pi makes the
        # folder first): the newest snapshot is the better live tree.
        warnings.append(f"{name}: the drive's copy of the files is empty; the newest snapshot used")
        files = None
    if files is not None:
        copied = _copy_live(files, live, f"{name}/", warnings, top=True)
        if held.sidecars is not None:
            _copy_sidecars(held.sidecars, live / os.fsdecode(syncmeta.FOLDER))
        st = files.stat()
        live.chmod(stat.S_IMODE(st.st_mode) & syncmeta.MODE_BITS | 0o700)
        os.utime(live, ns=(st.st_atime_ns, st.st_mtime_ns))
        return DriveSegment(user, segment, head, FROM_DRIVE, copied)
    if repo is None:  # an empty mirror and no files: the segment's folder, empty
        return DriveSegment(user, segment, head, FROM_DRIVE, 0)
    restored = restore_live(built, repo, user, segment, head, ROOT)
    return DriveSegment(user, segment, head, FROM_SNAPSHOT, restored.files)


def safe_to_read(mirror: Path, config: Path) -> dict[str, str]:
    """git's environment for reading a mirror that another user owns (the Pi writes its
    drive as root): git refuses such a repository ("dubious ownership") unless it is a
    `safe.directory`, which it takes only from the global or system configuration, both shut
    out by the store (design.md D4). So a global configuration of that one line, this
    mirror's path (written by git itself, which quotes it)."""
    config.unlink(missing_ok=True)
    Git(mirror).run(["config", "--file", str(config), "safe.directory", str(mirror)])
    return {"GIT_CONFIG_GLOBAL": str(config)}


def _has_entries(folder: Path) -> bool:
    with os.scandir(folder) as entries:
        return any(True for _ in entries)


def _copy_live(
    source: Path, dest: Path, shown: str, warnings: list[str], *, top: bool = False
) -> int:
    """Copy the drive's latest files into the live tree as the sync endpoint stores them:
    a symlink becomes `NAME.rclonelink` holding its target (liverestore does the same), bits
    and nanosecond times are kept, nothing is followed. Returns the files and links written.
    What cannot be read is warned about (its versions are in the history)."""
    count = 0
    try:
        entries = sorted(os.scandir(source), key=lambda e: e.name)
    except OSError as exc:
        warnings.append(f"{shown}: cannot be read ({exc.strerror}), its files left out")
        return 0
    names_here = {e.name for e in entries}
    for entry in entries:
        path = Path(entry.path)
        raw = os.fsencode(entry.name)
        if syncspec.is_partial_upload(raw) or (top and syncmeta.is_internal(raw)):
            continue
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            if entry.name + LINK_SUFFIX in names_here:
                # A real file of the stand-in's name wins, as in liverestore.
                warnings.append(f"{shown}{entry.name}: a link beside a file of its stand-in's name")
                continue
            target = dest / (entry.name + LINK_SUFFIX)
            target.write_bytes(os.fsencode(str(path.readlink())))
            target.chmod(0o644)
            os.utime(target, ns=(st.st_mtime_ns, st.st_mtime_ns))
            count += 1
        elif stat.S_ISDIR(st.st_mode):
            child = dest / entry.name
            child.mkdir(mode=0o700)
            count += _copy_live(path, child, f"{shown}{entry.name}/", warnings)
            child.chmod(stat.S_IMODE(st.st_mode) & syncmeta.MODE_BITS)
            os.utime(child, ns=(st.st_atime_ns, st.st_mtime_ns))
        elif stat.S_ISREG(st.st_mode):
            target = dest / entry.name
            try:
                shutil.copyfile(path, target, follow_symlinks=False)
            except PermissionError as exc:
                warnings.append(f"{shown}{entry.name}: cannot be read ({exc.strerror}), left out")
                continue
            target.chmod(stat.S_IMODE(st.st_mode) & syncmeta.MODE_BITS)
            os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
            count += 1
        else:
            warnings.append(f"{shown}{entry.name}: not a file, folder or link, left out")
    return count


def _copy_sidecars(source: Path, dest: Path) -> None:
    """The devices' sidecars back where the devices and the commit read them."""
    dest.mkdir(mode=0o755, exist_ok=True)
    for entry in sorted(source.iterdir()):
        if entry.is_file() and not entry.is_symlink() and entry.name.endswith(syncmeta.SUFFIX):
            shutil.copy2(entry, dest / entry.name, follow_symlinks=False)
