"""git bundles of a segment's history: made, checked and fetched with git's command line.

A full bundle holds the whole history; an incremental one is made `--not <tips already
uploaded>`, so its prerequisites are exactly the commits the bundles before it brought, and
`git bundle verify` in a repository that has those proves it applies (docs/design.md D4:
git runs with its configuration shut out, bluegrass.core.store.git).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from bluegrass.core.store.git import Git, GitError, describe_failure

_CHUNK = 1 << 20


def tips(git: Git, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """{ref: commit} of every branch (a Bluegrass repository has one: refs/heads/main)."""
    out = git.out(["for-each-ref", "--format=%(refname) %(objectname)", "refs/heads/"], env=env)
    found = {}
    for line in out.splitlines():
        ref, _, oid = line.partition(" ")
        found[ref] = oid
    return found


def has_commits(git: Git, oids: list[str]) -> bool:
    for oid in oids:
        if git.run(["cat-file", "-e", f"{oid}^{{commit}}"], check=False).returncode != 0:
            return False
    return True


def descends(git: Git, old: str, new: str) -> bool:
    """Whether `new` contains `old` (the history only grew)."""
    return git.run(["merge-base", "--is-ancestor", old, new], check=False).returncode == 0


def create(git: Git, dest: Path, refs: list[str], prerequisites: list[str]) -> str:
    """Write the bundle to `dest` and return its sha256, hashed as git writes it: reading
    the bundle again to hash it would add its whole size to the time before it is sent."""
    args = ["bundle", "create", "--quiet", "-", *refs]
    if prerequisites:
        args += ["--not", *prerequisites]
    digest = hashlib.sha256()
    with git.popen(args, stdin=subprocess.DEVNULL) as proc, dest.open("wb") as out:
        assert proc.stdout is not None and proc.stderr is not None
        while chunk := proc.stdout.read(_CHUNK):
            digest.update(chunk)
            out.write(chunk)
        # With --quiet git says little on stderr, only after its output: no deadlock.
        stderr = proc.stderr.read()
    if proc.wait() != 0:
        dest.unlink(missing_ok=True)
        raise GitError(describe_failure(args, stderr, git.git_dir))
    return digest.hexdigest()


def verify(git: Git, bundle: Path) -> str | None:
    """None if the bundle is sound and its prerequisites are in the repository, else why."""
    proc = git.run(["bundle", "verify", "--quiet", str(bundle)], check=False)
    if proc.returncode == 0:
        return None
    lines = [ln for ln in proc.stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    return lines[-1].strip() if lines else "git bundle verify failed"


def fetch(git: Git, bundle: Path, refs: list[str], env: Mapping[str, str] | None = None) -> None:
    """Bring the bundle's (or repository's) branches into the repository, fast-forward only
    (no `+`): a bundle that would rewrite history is refused, as the Pi's mirror refuses it
    (design.md D6)."""
    try:
        args = ["fetch", "--quiet", "--no-tags", str(bundle), *[f"{r}:{r}" for r in refs]]
        git.run(args, env=env)
    except GitError as exc:
        raise GitError(f"fetching {bundle.name}: {exc}") from None


def packed_size(git: Git) -> int:
    """Bytes in the repository's packs: how big its full bundle will roughly be (to make the
    largest first); 0 for a repository of loose objects only."""
    try:
        with os.scandir(git.git_dir / "objects" / "pack") as entries:
            return sum(e.stat().st_size for e in entries if e.name.endswith(".pack"))
    except OSError:
        return 0
