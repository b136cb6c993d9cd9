"""git bundles of a segment's history: made, checked and fetched with git's command line.

A full bundle holds the whole history; an incremental one is made `--not <tips already
uploaded>`, so its prerequisites are exactly the commits the bundles before it brought, and
`git bundle verify` in a repository that has those proves it applies (docs/design.md D4:
git runs with its configuration shut out, bluegrass.core.store.git).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from bluegrass.core.store.git import Git, GitError


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


def create(git: Git, dest: Path, refs: list[str], prerequisites: list[str]) -> None:
    args = ["bundle", "create", "--quiet", str(dest), *refs]
    if prerequisites:
        args += ["--not", *prerequisites]
    git.run(args)


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
