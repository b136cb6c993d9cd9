"""What a person finds at the drive's root: a README, RECOVERY.html, and the repository format.

The drive must be useful without Bluegrass, the Pi or the cloud: the README (plain text) and
RECOVERY.html (one self-contained page for any browser, opened from the plugged-in drive) list
what is on it, each user's folders with their latest snapshot's date and count, and the steps
to get files back with git alone (bluegrass.core.recoverysteps, the same the printed kit
gives). data/repository-format.md is a copy of docs/repository-format.md shipped with the
package (a test keeps the two identical).

They are refreshed when a job opens the drive and after each mirror; a file is rewritten only
when its text changed (write to a temporary file, fsync, rename); a repository whose main has
not moved since this process last looked costs no git process at all.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from bluegrass.appliance import recoverypage
from bluegrass.core import recoverysteps
from bluegrass.core.store.git import git_env

README = "README"
FORMAT = "repository-format.md"
RECOVERY = recoverypage.FILENAME
BRANCH = "main"

HEAD = """\
BLUEGRASS BACKUP DRIVE
======================

This drive holds backups made by Bluegrass. You need nothing but git to get your files back.
Any Linux computer reads this drive (it is ext4); on macOS or Windows use a Linux live USB, or
a tool that reads ext4. RECOVERY.html, beside this README, says the same in a web browser.

Where things are (USER is the account name, FOLDER the name of a backed-up folder):

  bluegrass/USER/FOLDER/       the latest copy of the folder's files: open them directly
  bluegrass/USER/FOLDER.git    every snapshot of the folder, as a git repository
"""

TAIL = """\
One folder's latest snapshot as a git working copy (your files are under restored/files/):
  git clone bluegrass/USER/SEGMENT.git ~/restored

If git refuses with "dubious ownership" (the files belong to the Pi's user, not yours), run
the export line of step 1 in the same terminal, or once:
  git config --global --add safe.directory '*'

With Bluegrass installed:  bluegrass-appliance restore SEGMENT [PATH] --at DATE --to NEWDIR

Do not change anything under bluegrass/: the Pi only ever adds to it.
"""


@dataclass(frozen=True)
class SegmentInfo:
    """One repository found on the drive. Names come from the drive's folders: untrusted."""

    user: str
    name: str
    latest: str | None  # the newest snapshot's date as git prints it (%ci); None: none yet
    count: int


# repository -> (its main's commit id, (latest date, count)): a repository whose main has not
# moved is not asked again by this process (the daemon refreshes before and after each job).
_seen: dict[Path, tuple[str, tuple[str | None, int]]] = {}


def _tip(repo: Path) -> str | None:
    """main's commit id read from the ref files, without a process; None when unsure."""
    try:
        return (repo / "refs" / "heads" / BRANCH).read_text().strip() or None
    except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError):
        pass
    try:
        packed = (repo / "packed-refs").read_text(errors="replace")
    except (FileNotFoundError, NotADirectoryError):
        return None
    for line in packed.splitlines():
        if line.endswith(f" refs/heads/{BRANCH}"):
            return line.split(" ", 1)[0]
    return None


def _history(repo: Path) -> tuple[str | None, int]:
    tip = _tip(repo)
    known = _seen.get(repo)
    if tip is not None and known is not None and known[0] == tip:
        return known[1]
    found = _ask_git(repo)
    if tip is not None:
        _seen[repo] = (tip, found)  # one entry a repository: the daemon runs for months
    return found


def _ask_git(repo: Path) -> tuple[str | None, int]:
    # The drive's folders may belong to another user (a drive moved between machines).
    env = git_env(
        repo,
        {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "safe.directory", "GIT_CONFIG_VALUE_0": "*"},
    )
    try:
        done = subprocess.run(
            ["git", "log", "--format=%ci", BRANCH, "--"],
            env=env,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None, 0
    dates = done.stdout.splitlines() if done.returncode == 0 else []
    return (dates[0] if dates else None), len(dates)


def segments(root: Path) -> list[SegmentInfo]:
    """Every bluegrass/USER/SEGMENT.git on the drive, sorted by user then segment."""
    found: list[SegmentInfo] = []
    base = root / "bluegrass"
    try:
        users = sorted(p for p in base.iterdir() if p.is_dir() and not p.is_symlink())
    except FileNotFoundError:
        return []
    for user in users:
        for repo in sorted(user.glob("*.git")):
            if repo.is_dir() and not repo.is_symlink():
                latest, count = _history(repo)
                found.append(SegmentInfo(user.name, repo.name[: -len(".git")], latest, count))
    return found


def printable(name: str) -> str:
    """A name from the drive as plain text may show it: control characters escaped."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in name)


def listing_lines(found: list[SegmentInfo]) -> list[str]:
    if not found:
        return ["  (nothing yet: the Pi has not mirrored any folder to this drive)"]
    lines: list[str] = []
    for user in dict.fromkeys(s.user for s in found):
        lines.append(f"  {printable(user)}")
        for seg in (s for s in found if s.user == user):
            when = (
                f"latest snapshot {seg.latest}, {seg.count} snapshot{'s' if seg.count != 1 else ''}"
                if seg.latest
                else "no snapshot yet"
            )
            lines.append(f"    {printable(seg.name)}: {when}")
    return lines


def readme_text(found: list[SegmentInfo], label: str | None = None) -> str:
    parts = [HEAD, "What is on this drive (user, then each backed-up folder):", ""]
    parts += listing_lines(found)
    parts += ["", "Get files back with git (type the commands as shown, in order):", ""]
    for number, step in enumerate(
        (recoverysteps.open_drive(label), *recoverysteps.drive_steps()), start=1
    ):
        parts.append(f"{number}. {step.title}")
        parts.append(f"   {step.words}")
        for command in step.commands:
            parts.append("")
            parts += ["     " + line for line in command.splitlines()]
        parts.append("")
    parts.append(TAIL)
    return "\n".join(parts)


def format_text() -> bytes:
    return resources.files("bluegrass.appliance").joinpath("data", FORMAT).read_bytes()


def _put(root: Path, name: str, data: bytes) -> None:
    path = root / name
    try:
        if path.read_bytes() == data:
            return
    except FileNotFoundError:
        pass
    tmp = root / f".{name}.tmp"
    with tmp.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(path)


def write(root: Path, label: str | None = None) -> None:
    """Write (or refresh) the README, RECOVERY.html and the format description at the drive's
    root; `label` is the drive's file-system label, which names where a desktop mounts it."""
    found = segments(root)
    _put(root, README, readme_text(found, label).encode())
    _put(root, RECOVERY, recoverypage.render(found, label).encode())
    _put(root, FORMAT, format_text())
