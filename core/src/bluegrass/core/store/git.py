"""Running git on a Bluegrass repository, isolated from everything that could steer it.

Git is always run with an explicit GIT_DIR, never from inside a user's tree (a nested
repository's config could run commands: core.fsmonitor), and with system and global
configuration and attributes switched off, so the result does not depend on the host.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from bluegrass.core import diskspace
from bluegrass.core.errors import BluegrassError

IDENTITY = {
    "GIT_AUTHOR_NAME": "Bluegrass",
    "GIT_AUTHOR_EMAIL": "bluegrass@localhost",
    "GIT_COMMITTER_NAME": "Bluegrass",
    "GIT_COMMITTER_EMAIL": "bluegrass@localhost",
}


class GitError(BluegrassError):
    """A git command failed; the message carries git's own last line."""


def git_env(git_dir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    # Drop every inherited GIT_* variable: a hook or a caller's GIT_INDEX_FILE or
    # GIT_WORK_TREE must never leak into our repository.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_DIR=str(git_dir),
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_CONFIG_NOSYSTEM="1",
        GIT_ATTR_NOSYSTEM="1",
        GIT_TERMINAL_PROMPT="0",
        GIT_NO_REPLACE_OBJECTS="1",
        LC_ALL="C",
        **IDENTITY,
    )
    if extra:
        env.update(extra)
    return env


class Git:
    """git bound to one bare repository."""

    def __init__(self, git_dir: Path) -> None:
        self.git_dir = git_dir

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return git_env(self.git_dir, extra)

    def run(
        self,
        args: Sequence[str],
        *,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:
        proc = subprocess.run(
            ["git", *args],
            input=input,
            capture_output=True,
            env=self.env(env),
            cwd=self.git_dir,
            check=False,
        )
        if check and proc.returncode != 0:
            raise GitError(describe_failure(args, proc.stderr, self.git_dir))
        return proc

    def out(self, args: Sequence[str], **kwargs: object) -> str:
        return self.run(args, **kwargs).stdout.decode("utf-8", "replace").strip()  # type: ignore[arg-type]

    def popen(
        self,
        args: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        stdin: int | None = subprocess.PIPE,
        stdout: int | None = subprocess.PIPE,
    ) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            ["git", *args],
            stdin=stdin,
            stdout=stdout,
            stderr=subprocess.PIPE,
            env=self.env(env),
            cwd=self.git_dir,
        )


def parse_config_list(raw: bytes) -> dict[str, list[str]]:
    """The output of `git config --list -z` as {key: [values]}; keys are git's canonical
    spelling (section and name lower-cased), so compare with `key.lower()` for plain keys."""
    found: dict[str, list[str]] = {}
    for item in raw.decode("utf-8", "surrogateescape").split("\0"):
        if not item:
            continue
        key, _, value = item.partition("\n")
        found.setdefault(key, []).append(value)
    return found


def describe_failure(args: Sequence[str], stderr: bytes, git_dir: Path) -> str:
    text = stderr.decode("utf-8", "replace")
    if diskspace.mentions_full(text):
        return diskspace.no_space(git_dir, f"git {args[0]} wrote into {git_dir}")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    reason = lines[-1].strip() if lines else "no message"
    return f"git {args[0]} failed in {git_dir}: {reason}"
