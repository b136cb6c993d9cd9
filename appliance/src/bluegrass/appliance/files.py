"""The latest plain files: `rclone sync` from the cloud's sync endpoint onto the drive.

DRIVE/bluegrass/<user>/<segment>/ follows the cloud's live tree (the history is in the
mirror beside it). rclone is the pinned binary (bluegrass.core.rclone.binary()), never one
found on PATH, with a configuration of our own (0600) that pins the server's SSH host key and
holds the password only obscured. Only reads happen on the server side.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from bluegrass.appliance import errors, health, pulltree
from bluegrass.appliance.errors import CloudRefused, CloudUnreachable, DriveError, DriveFull
from bluegrass.appliance.runner import Progress, Runner
from bluegrass.appliance.settings import Paths
from bluegrass.appliance.source import REMOTE_NAME, HttpSource, Segment, Source
from bluegrass.appliance.state import State
from bluegrass.core import rclone, syncmeta, syncspec
from bluegrass.core.enrollment import Enrollment
from bluegrass.core.errors import BluegrassError

# rclone's in-flight uploads on the cloud ("name.<8 hex>.bluegrass-part"), the bisync check
# sentinel and the metadata sidecars at each segment's root are the sync machinery's, not the
# user's. The sidecars are pulled beside the files instead (sidecars_path).
_HEX = "[0-9a-f]" * 8
_META = os.fsdecode(syncmeta.FOLDER)
FILTERS = (
    f"- /{syncspec.CHECK_FILENAME}",
    f"- /{_META}/**",
    f"- *.{_HEX}{syncspec.PARTIAL_SUFFIX}",
)


# Failures that are no one entry's: the whole job stops on them (bluegrass.appliance.jobs).
FATAL = (DriveFull, CloudUnreachable, CloudRefused, DriveError)


@dataclass
class FilesResult:
    segment: Segment
    ok: bool
    message: str

    def to_json(self) -> dict[str, object]:
        return {
            "user": self.segment.user,
            "segment": self.segment.name,
            "ok": self.ok,
            "message": self.message,
        }


@dataclass
class FilesReport:
    results: list[FilesResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def summary(self) -> str:
        failed = [r for r in self.results if not r.ok]
        text = f"latest files of {len(self.results)} segments pulled"
        if failed:
            text += "; failed: " + "; ".join(f"{r.segment.key}: {r.message}" for r in failed)
        return text


def files_path(drive_root: Path, user: str, segment: str) -> Path:
    return drive_root / "bluegrass" / user / segment


def sidecars_path(drive_root: Path, user: str, segment: str) -> Path:
    """The devices' metadata sidecars of a segment (no segment name has a dot in it)."""
    return drive_root / "bluegrass" / user / f"{segment}.meta"


def rclone_env() -> dict[str, str]:
    # Nothing from the caller's environment may steer rclone (RCLONE_* flags, a config path).
    env = {k: v for k, v in os.environ.items() if not k.startswith("RCLONE_")}
    env["LC_ALL"] = "C"
    return env


def obscure(password: str) -> str:
    """rclone's reversible obscuring, as its config files expect; the password goes through
    stdin, never the command line."""
    proc = subprocess.run(
        [str(rclone.binary()), "obscure", "-"],
        input=password.encode(),
        capture_output=True,
        env=rclone_env(),
        check=False,
    )
    if proc.returncode != 0:
        raise BluegrassError(f"rclone obscure failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout.decode().strip()


def known_hosts_line(server: str, port: int, host_key: str) -> str:
    host = server if port == 22 else f"[{server}]:{port}"
    return f"{host} {host_key}\n"


def write_rclone_config(paths: Paths, enrollment: Enrollment) -> None:
    """The sftp remote, written 0600 before each pull so a new enrollment takes effect."""
    paths.ensure()
    _write_private(
        paths.known_hosts,
        known_hosts_line(enrollment.server, enrollment.sftp_port, enrollment.host_key),
    )
    text = "\n".join(
        [
            f"[{REMOTE_NAME}]",
            "type = sftp",
            f"host = {enrollment.server}",
            f"port = {enrollment.sftp_port}",
            f"user = {enrollment.user}",
            f"pass = {obscure(enrollment.password)}",
            f"known_hosts_file = {paths.known_hosts}",
            "shell_type = unix",
            "md5sum_command = md5sum",
            "sha1sum_command = sha1sum",
            "",
        ]
    )
    _write_private(paths.rclone_config, text)


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    tmp.chmod(0o600)  # an existing file keeps its mode through O_CREAT
    tmp.replace(path)


def pull_segment(
    drive_root: Path, segment: Segment, source: Source, config: Path, runner: Runner, transfers: int
) -> FilesResult:
    target = files_path(drive_root, segment.user, segment.name)
    remote = source.files_remote(segment)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise errors.from_os_error(exc, f"creating {target}") from None
    try:
        before = _list(runner, remote, config, links=False)
        settled = pulltree.plan(before, _list(runner, str(target), config, links=True))
    except pulltree.ListingFailed as exc:
        return _failed(exc.stderr, exc.code, segment, source, config, target, runner)
    for path in settled.removed:
        try:
            pulltree.remove(target, path)
        except OSError as exc:
            raise errors.from_os_error(exc, f"making room for {path} in {segment.key}") from None
    rules = (*FILTERS, *settled.rules())
    proc = runner.run(_sync_argv(remote, target, config, transfers, rules), env=rclone_env())
    problems = settled.problems(before)
    failed: dict[str, str] = {}
    if proc.returncode != 0:
        stderr = proc.stderr.decode("utf-8", "replace")
        failure = classify_rclone(stderr, segment, proc.returncode)
        failed = _entries_failed(stderr)
        if not failed or isinstance(failure, FATAL):
            return _failed(stderr, proc.returncode, segment, source, config, target, runner)
        # rclone copied the rest but deleted nothing: the copy is not clean either way.
        problems += [f"{path}: {why}" for path, why in failed.items()]
    try:
        left_out = [*settled.conflicts, *failed]
        problems += _not_pulled(runner, remote, target, config, before, left_out)
    except pulltree.ListingFailed as exc:
        return _failed(exc.stderr, exc.code, segment, source, config, target, runner)
    # After the files, so the records are at least as new as what they describe.
    sidecars = sidecars_path(drive_root, segment.user, segment.name)
    meta = runner.run(_sync_argv(f"{remote}/{_META}", sidecars, config, 1, ()), env=rclone_env())
    if meta.returncode not in (0, 3):  # 3, "directory not found": no device wrote one yet
        return _failed(
            meta.stderr.decode("utf-8", "replace"),
            meta.returncode,
            segment,
            source,
            config,
            target,
            runner,
        )
    message = _put_back(target, sidecars) if meta.returncode == 0 else "up to date"
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        return FilesResult(
            segment,
            False,
            f"{segment.key}: the rest was pulled, but not: " + "; ".join(problems[:3]) + more,
        )
    return FilesResult(segment, True, message)


def _list(runner: Runner, remote: str, config: Path, links: bool) -> pulltree.Listing:
    proc = runner.run(pulltree.listing_argv(remote, config, FILTERS, links), env=rclone_env())
    if proc.returncode != 0:
        raise pulltree.ListingFailed(proc.stderr.decode("utf-8", "replace"), proc.returncode)
    return pulltree.parse_listing(proc.stdout)


def _entries_failed(stderr: str) -> dict[str, str]:
    """The entries rclone could not copy, each with why, from the error records that name one
    (once each: rclone's retries repeat them); the rest of the segment was still pulled."""
    found: dict[str, str] = {}
    for line in stderr.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict) or record.get("level") != "error":
            continue
        # A record about a whole tree ("*local.Fs": "not deleting files") names no entry.
        if record.get("object") and not str(record.get("objectType", "")).endswith(".Fs"):
            found.setdefault(str(record["object"]), str(record.get("msg", "")).strip())
    return found


def _not_pulled(
    runner: Runner,
    remote: str,
    target: Path,
    config: Path,
    before: pulltree.Listing,
    left_out: list[str],
) -> list[str]:
    """The cloud's entries the drive does not hold after the sync, each with why; an entry
    counts only if the cloud still has it (the cloud is live: it may have gone meanwhile)."""
    gone = pulltree.missing(before, _list(runner, str(target), config, links=True), left_out)
    if not gone:
        return []
    now = _list(runner, remote, config, links=False)
    still = [p for p in gone if p in now and now[p] == before[p]]
    return [f"{_shown(p)}: on the cloud, not on the drive" for p in still]


def _shown(path: str) -> str:
    return f"{path[: -len(pulltree.LINK)]} (a link)" if path.endswith(pulltree.LINK) else path


def _failed(
    stderr: str,
    code: int,
    segment: Segment,
    source: Source,
    config: Path,
    target: Path,
    runner: Runner,
) -> FilesResult:
    failure = classify_rclone(stderr, segment, code)
    if isinstance(failure, DriveFull):
        raise DriveFull(f"{failure}: {_space_needed(source, segment, config, target, runner)}")
    if isinstance(failure, FATAL):
        raise failure
    return FilesResult(segment, False, str(failure))


def _put_back(target: Path, sidecars: Path) -> str:
    """Give the pulled files the bits and times the devices recorded (rclone over sftp keeps
    neither); the result's message."""
    applied = syncmeta.apply(target, syncmeta.Sidecars.read(sidecars))
    if applied.failed:
        path, why = applied.failed[0]
        more = f" (and {len(applied.failed) - 1} more)" if len(applied.failed) > 1 else ""
        return f"up to date; could not set the bits or time of {path}: {why}{more}"
    return "up to date"


def _sync_argv(
    remote: str, target: Path, config: Path, transfers: int, rules: tuple[str, ...]
) -> list[str]:
    return [
        str(rclone.binary()),
        "sync",
        remote,
        str(target),
        "--config",
        str(config),
        "--links",
        "--create-empty-src-dirs",
        *[arg for rule in rules for arg in ("--filter", rule)],
        "--transfers",
        str(transfers),
        "--checkers",
        str(max(2, transfers * 2)),
        # A Pi has little memory: rclone's default read-ahead is 16 MB per transfer.
        "--buffer-size",
        "4M",
        "--contimeout",
        "30s",
        "--timeout",
        "5m",
        "--retries",
        "2",
        "--use-json-log",
        "--log-level",
        "NOTICE",
    ]


def _space_needed(
    source: Source, segment: Segment, config: Path, target: Path, runner: Runner
) -> str:
    """ "N MB free, about M MB more needed": what a person needs to choose a bigger drive.

    The segment's size on the cloud is asked only now, once the drive is full (one more
    listing); what is already on the drive counts as present, so the estimate is what the
    copy still lacks, not the segment's whole size.
    """
    free = health.disk(target)
    free_text = f"{int(free['free']) / 1e6:.1f} MB free" if free else "free space unknown"
    proc = runner.run(
        [
            str(rclone.binary()),
            "size",
            "--json",
            source.files_remote(segment),
            "--config",
            str(config),
            *[arg for rule in FILTERS for arg in ("--filter", rule)],
        ],
        env=rclone_env(),
    )
    try:
        total = int(json.loads(proc.stdout)["bytes"]) if proc.returncode == 0 else None
    except (ValueError, KeyError, TypeError):
        total = None
    if total is None:
        return f"{free_text}; how much more is needed is unknown"
    present = _size_on_drive(target)
    return f"{free_text}, about {max(0, total - present) / 1e6:.1f} MB more needed"


def _size_on_drive(target: Path) -> int:
    """The bytes of the regular files under `target`; a link is never followed (its target may
    be anywhere on the Pi)."""
    total = 0
    for folder, _, names in os.walk(target):  # os.walk does not descend into links
        for name in names:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(folder, name))  # noqa: PTH118
                total += st.st_size if stat.S_ISREG(st.st_mode) else 0
    return total


def rclone_messages(stderr: str) -> list[str]:
    found = []
    for line in stderr.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            if line.strip():
                found.append(line.strip())
            continue
        if isinstance(record, dict) and record.get("level") in ("error", "critical", "fatal"):
            found.append(str(record.get("msg", "")).strip())
    return found


def classify_rclone(stderr: str, segment: Segment, code: int) -> BluegrassError:
    messages = rclone_messages(stderr)
    text = "\n".join(messages).lower()
    last = messages[-1] if messages else f"rclone exited with {code}"
    if "knownhosts: key mismatch" in text or "key is unknown" in text:
        return CloudRefused(
            f"{segment.key}: the sync endpoint's SSH host key does not match the enrollment "
            "(someone in between, or a reinstalled server: enroll again)"
        )
    if "unable to authenticate" in text:
        return CloudRefused(f"{segment.key}: the sync endpoint refused this device's password")
    drive = errors.classify_drive_text(text, f"pulling files of {segment.key}")
    if drive:
        return drive
    if any(
        t in text
        for t in (
            "connection refused",
            "no route to host",
            "i/o timeout",
            "couldn't connect",
            "connection reset",
            "no such host",
        )
    ):
        return CloudUnreachable(f"{segment.key}: cannot reach the sync endpoint ({last})")
    if code == 3 or "directory not found" in text:
        return BluegrassError(f"{segment.key}: the segment's files are not on the cloud")
    return BluegrassError(f"{segment.key}: rclone sync failed: {last}")


def pull_all(
    drive_root: Path,
    source: Source,
    paths: Paths,
    runner: Runner,
    state: State,
    transfers: int,
    progress: Progress | None = None,
) -> FilesReport:
    segments = source.segments()
    config = Path(os.devnull)
    if isinstance(source, HttpSource):
        write_rclone_config(paths, source.enrollment)
        config = paths.rclone_config
    report = FilesReport()
    for done, segment in enumerate(segments):
        runner.check()
        if progress is not None:
            progress(done, len(segments), f"pulling the files of {segment.key}")
        try:
            result = pull_segment(drive_root, segment, source, config, runner, transfers)
        except (CloudUnreachable, CloudRefused, DriveError, errors.Cancelled):
            raise
        except OSError as exc:
            raise errors.from_os_error(exc, f"pulling files of {segment.key}") from None
        except BluegrassError as exc:
            result = FilesResult(segment, False, str(exc))
        report.results.append(result)
        state.segment_result(segment.user, segment.name, "files", result.ok, None, result.message)
    return report
