"""What a person finds at the drive's root: a README, and the repository format beside it.

The drive must be useful without Bluegrass, the Pi or the cloud: the README says, in a few
concrete commands, how to get files back with git alone. data/repository-format.md is a copy
of docs/repository-format.md shipped with the package (a test keeps the two identical).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

README = "README"
FORMAT = "repository-format.md"

TEXT = """\
BLUEGRASS BACKUP DRIVE
======================

This drive holds backups made by Bluegrass. You need nothing but git to get your files back.
Any Linux computer reads this drive (it is ext4); on macOS or Windows use a Linux live USB, or
a tool that reads ext4.

Where things are (USER is the account name, SEGMENT the name of a backed-up folder):

  bluegrass/USER/SEGMENT/       the latest copy of the folder's files: open them directly
  bluegrass/USER/SEGMENT.git    every snapshot of the folder, as a git repository

Get files back with git (run these from the drive's top folder):

  # every snapshot, newest first
  git --git-dir bluegrass/USER/SEGMENT.git log --format='%h %ci %s'

  # the latest snapshot, as a new folder (your files are under restored/files/)
  git clone bluegrass/USER/SEGMENT.git ~/restored

  # one snapshot's files, into a folder of your choice
  mkdir -p ~/restored && git --git-dir bluegrass/USER/SEGMENT.git archive COMMIT:files \\
      | tar -x -C ~/restored

  # one file as it was in a snapshot
  git --git-dir bluegrass/USER/SEGMENT.git show COMMIT:files/path/to/file > file

COMMIT is the short id printed by `git log`. If git refuses with "dubious ownership" (the
files belong to the Pi's user, not yours), run it with sudo, or once:
  git config --global --add safe.directory '*'

Plain git gives back every file's content, the executable bit and symlinks. Modification
times, other permission bits, empty folders and a few escaped names (.git and friends) are
recorded in a file called bluegrass-manifest in every snapshot: repository-format.md, beside
this README, explains it and how to use it by hand.

With Bluegrass installed:  bluegrass-appliance restore SEGMENT [PATH] --at DATE --to NEWDIR

Do not change anything under bluegrass/: the Pi only ever adds to it.
"""


def format_text() -> bytes:
    return resources.files("bluegrass.appliance").joinpath("data", FORMAT).read_bytes()


def write(root: Path) -> None:
    """Write (or refresh) the README and the format description at the drive's root."""
    for name, data in ((README, TEXT.encode()), (FORMAT, format_text())):
        path = root / name
        try:
            if path.read_bytes() == data:
                continue
        except FileNotFoundError:
            pass
        tmp = root / f".{name}.tmp"
        with tmp.open("wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(path)
