"""`make demo`: the cloud's daily job on a sample folder, start to finish.

Creates a fresh data root under ./bluegrass-demo with a user and a sample folder, commits it
as of yesterday, changes a few files, commits again, restores yesterday's version and shows
what differs. Every step is the real `bluegrass-cloud` command line, printed as it runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "bluegrass-demo"
DATA = DEMO / "data"
CLOUD = str(Path(sys.executable).parent / "bluegrass-cloud")


def step(title: str) -> None:
    print(f"\n== {title}")


def cloud(*args: str) -> str:
    shown = " ".join(["bluegrass-cloud", "--data", os.path.relpath(DATA), *args])
    print(f"$ {shown}")
    proc = subprocess.run([CLOUD, "--data", str(DATA), *args], capture_output=True, text=True)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"demo: step failed: {shown}")
    return proc.stdout


def write_sample(tree: Path) -> None:
    (tree / "letters").mkdir(parents=True)
    (tree / "letters" / "to-grandma.txt").write_text("Dear Grandma,\nKentucky was lovely.\n")
    (tree / "recipes").mkdir()
    (tree / "recipes" / "burgoo.md").write_text("# Burgoo\n\n- mutton\n- corn\n- okra\n")
    (tree / "photos").mkdir()
    (tree / "photos" / "horse.jpg").write_bytes(os.urandom(200_000))
    (tree / "taxes-2025.pdf").write_bytes(b"%PDF-1.4\n" + os.urandom(50_000))
    (tree / "empty-for-now").mkdir()
    (tree / "latest-letter").symlink_to("letters/to-grandma.txt")
    (tree / "scripts").mkdir()
    (tree / "scripts" / "backup-check.sh").write_text("#!/bin/sh\necho ok\n")
    (tree / "scripts" / "backup-check.sh").chmod(0o755)
    # A project folder whose .gitignore ignores everything: still backed up, byte for byte.
    (tree / "project").mkdir()
    (tree / "project" / ".gitignore").write_text("*\n")
    (tree / "project" / "notes.txt").write_text("ignored by git, not by Bluegrass\n")


def change_sample(tree: Path) -> None:
    (tree / "letters" / "to-grandma.txt").write_text(
        "Dear Grandma,\nKentucky was lovely.\nPS: send pie.\n"
    )
    (tree / "recipes" / "burgoo.md").unlink()
    (tree / "letters" / "to-aunt-may.txt").write_text("Dear May,\nthe horses say hi.\n")


def snapshot_of(root: Path) -> dict[str, bytes]:
    """Each file's bytes and each symlink's target, by relative path."""
    found = {}
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            found[rel] = b"-> " + os.fsencode(path.readlink())
        elif path.is_file():
            found[rel] = path.read_bytes()
    return found


def differences(old: Path, new: Path) -> list[str]:
    before, after = snapshot_of(old), snapshot_of(new)
    out = [f"  only yesterday: {p}" for p in before.keys() - after.keys()]
    out += [f"  only today:     {p}" for p in after.keys() - before.keys()]
    out += [f"  changed:        {p}" for p in before.keys() & after.keys() if before[p] != after[p]]
    return sorted(out, key=lambda line: line.split(":", 1)[1])


def main() -> int:
    if DEMO.exists():
        shutil.rmtree(DEMO)
    DEMO.mkdir()
    os.chdir(ROOT)

    step("Create a data root and a user")
    cloud("init")
    cloud("user", "add", "demo")
    tree = DATA / "files" / "demo" / "documents"
    write_sample(tree)
    print(f"(sample folder written to {os.path.relpath(tree)})")

    step("Yesterday's daily commit")
    yesterday = datetime.now().astimezone() - timedelta(days=1)
    cloud("commit", "--date", yesterday.isoformat(timespec="seconds"))

    step("Today: edit a letter, delete a recipe, write a new letter, and commit")
    change_sample(tree)
    cloud("commit")
    cloud("commit")  # nothing changed since: no new snapshot

    step("The segment's history")
    cloud("log", "demo", "documents")

    step("Restore yesterday's version")
    restored = DEMO / "restored-yesterday"
    cloud(
        "restore", "demo", "documents", "--at", yesterday.date().isoformat(), "--to", str(restored)
    )

    step("What differs between yesterday and today")
    print("\n".join(differences(restored, tree)))

    step("Check every repository")
    cloud("verify")
    print(f"\nDone. Everything is under {os.path.relpath(DEMO)}/ ; try:")
    print(f"  git --git-dir {os.path.relpath(DATA)}/repos/demo/documents.git log --stat")
    return 0


if __name__ == "__main__":
    sys.exit(main())
