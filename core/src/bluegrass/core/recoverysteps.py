"""How to get every file back from a Bluegrass drive with git alone, as data.

The printed recovery kit (bluegrass.cloud.kit) and the drive's own RECOVERY.html render these
steps; a test runs their commands literally with nothing but git (and sh, tar) on PATH. So
each command is exactly what a person types, and loops over the `bluegrass/*/*.git`
repositories that are on the drive rather than naming them: the steps stay right when users
or segments are added after they were printed. Layout: docs/repository-format.md.

Every command runs in the drive's top folder (the one holding README and bluegrass/), in one
shell session, and writes only under ~/restored/.
"""

from __future__ import annotations

from dataclasses import dataclass

from bluegrass.core import names

DEFAULT_LABEL = "BLUEGRASS"
RESTORED = "$HOME/restored"
# A date as a person writes it; git reads it in the computer's local time.
EXAMPLE_DATE = "2026-12-01 23:59"


@dataclass(frozen=True)
class Step:
    """One thing to do: plain words, then the commands to type, in order.

    A command may span lines (a loop); each is a complete POSIX sh command as printed.
    """

    title: str
    words: str
    commands: tuple[str, ...] = ()


def open_drive(label: str | None = None) -> Step:
    """Going to the drive's top folder: the one path the reader may have to change."""
    where = f"/media/$USER/{label or DEFAULT_LABEL}"
    return Step(
        title="Open the drive",
        words=(
            "Plug the drive into a Linux computer (it is formatted ext4; on a Mac or Windows "
            "computer, start it from a Linux USB stick). Open a terminal and go to the drive's "
            f"top folder, the one with the README in it. Most Linux desktops show it at {where}; "
            "if yours is elsewhere, type that folder instead. Git reads files the drive's own "
            "user owns only when told to, so the second line tells it, for this terminal only. "
            "If a file says 'Permission denied', put sudo before the command."
        ),
        commands=(
            f'cd "{where}"',
            "export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=safe.directory GIT_CONFIG_VALUE_0='*'",
        ),
    )


def _repos(user: str | None) -> str:
    return f"bluegrass/{names.check('user', user) if user else '*'}/*.git"


def _archive(commit: str) -> str:
    """The snapshot's files into "$to"; a snapshot of an empty folder has no files/ tree, and
    `git archive` of it would fail with two errors a reader cannot make sense of."""
    return (
        f'if git --git-dir "$repo" rev-parse -q --verify "{commit}:files" >/dev/null; then\n'
        f'    git --git-dir "$repo" archive "{commit}:files" | tar -x -C "$to"\n'
        '  else echo "$repo: no files in this snapshot"; fi'
    )


def drive_steps(user: str | None = None) -> tuple[Step, ...]:
    """Everything back from a drive, run in its top folder after `open_drive`; `user` limits
    the loops to that user's folders (None: every user on the drive)."""
    repos = _repos(user)
    # USER/SEGMENT from bluegrass/USER/SEGMENT.git, with POSIX parameter expansion only.
    target = 'to="{base}/${{repo#bluegrass/}}"; to="${{to%.git}}"'
    return (
        Step(
            title="See what is on the drive",
            words=(
                "Each backed-up folder is a git repository at bluegrass/USER/FOLDER.git, and "
                "each snapshot (one a day when something changed) is a commit in it. This "
                "lists every folder with its snapshots, newest first: short id, date, what "
                "changed. The folder bluegrass/USER/FOLDER/ beside it is a plain copy of the "
                "latest files."
            ),
            commands=(
                f"for repo in {repos}; do\n"
                '  echo "== $repo"\n'
                "  git --git-dir \"$repo\" log --format='%h %ci %s' main\n"
                "done",
            ),
        ),
        Step(
            title="Get back the latest files of every folder",
            words=(
                f"Copies each folder's newest snapshot to {RESTORED}/latest/USER/FOLDER "
                "(a new folder in your home; nothing on the drive is changed)."
            ),
            commands=(
                f"for repo in {repos}; do\n"
                f"  {target.format(base=RESTORED + '/latest')}\n"
                '  mkdir -p "$to"\n'
                f"  {_archive('main')}\n"
                "done",
            ),
        ),
        Step(
            title="Get back every folder as it was on a date",
            words=(
                "Type the date and time you want on the first line (year-month-day "
                "hour:minute, your computer's time). Each folder comes back as its last "
                f"snapshot before then, in {RESTORED}/as-of/USER/FOLDER; a folder with no "
                "snapshot that old is named and skipped. Use a new folder name (or remove "
                "as-of) before trying another date."
            ),
            commands=(
                f'WHEN="{EXAMPLE_DATE}"',
                f"for repo in {repos}; do\n"
                f"  {target.format(base=RESTORED + '/as-of')}\n"
                '  c=$(git --git-dir "$repo" rev-list -1 --before="$WHEN" main)\n'
                '  if [ -z "$c" ]; then echo "$repo: no snapshot before $WHEN"; continue; fi\n'
                '  mkdir -p "$to"\n'
                f"  {_archive('$c')}\n"
                "done",
            ),
        ),
        Step(
            title="Get back one file",
            words=(
                "Replace USER, FOLDER, the short id (from the list above) and the file's path "
                "inside the folder (keep the double quotes: a name may have spaces). The file "
                "is written to your home folder, as file."
            ),
            commands=(
                'git --git-dir bluegrass/USER/FOLDER.git show "ID:files/path/to/file"'
                ' > "$HOME/file"',
            ),
        ),
        Step(
            title="What plain git does not give back",
            words=(
                "Every file's content, the executable bit and symbolic links come back. "
                "Modification times, other permission bits and empty folders are listed in "
                "the file bluegrass-manifest of each snapshot; repository-format.md on the "
                "drive explains it."
            ),
        ),
    )
