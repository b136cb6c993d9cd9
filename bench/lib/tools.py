"""The backup tools under comparison, each driven through its own command line.

Every tool works in its own folder (`workspace`) holding its repository, its caches and the
live tree it backs up, so tools never share state and each can be deleted afterwards. Setup
(creating repositories, keys) is not timed; `snapshot`, `after_snapshots` and `gc` are.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench.lib import data
from bench.lib.measure import Measurement, combine, measure, run_quiet
from bench.lib.report import project_revision

# restic needs a password even for a benchmark; a fixed one keeps runs reproducible.
RESTIC_PASSWORD = "bluegrass-bench"
BENCH_USER = "bench"
# The Debian package to install when a tool is missing.
PACKAGES = {"git": "git", "restic": "restic", "borg": "borgbackup"}


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without anything that could steer git or Bluegrass."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GIT_", "BLUEGRASS_", "RESTIC_", "BORG_"))
    }
    env["LC_ALL"] = "C"
    env.update(extra)
    return env


def git_env(git_dir: Path, work_tree: Path | None = None) -> dict[str, str]:
    """Plain git, isolated: explicit repository, no user or system configuration."""
    env = clean_env(
        GIT_DIR=str(git_dir),
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_CONFIG_NOSYSTEM="1",
        GIT_TERMINAL_PROMPT="0",
    )
    if work_tree is not None:
        env["GIT_WORK_TREE"] = str(work_tree)
    return env


# Identity on the command line, since the global and system config are switched off.
GIT_IDENTITY = ["-c", "user.name=bench", "-c", "user.email=bench@localhost"]


@dataclass
class Snapshot:
    """One timed snapshot and what the tool reported about it (where it reports anything)."""

    measurement: Measurement
    committed: bool | None = None  # None: the tool does not say
    stored_entries: int | None = None  # files and symlinks in the snapshot, where cheap to know
    changed: int | None = None
    notes: list[str] = field(default_factory=list)


class Tool:
    name = ""
    binary = ""

    def __init__(self, workspace: Path, tree_name: str) -> None:
        self.workspace = workspace
        self.tree_name = tree_name
        self.logs = workspace / "logs"
        self.steps = 0  # timed steps run so far; numbers the log files in order
        self.snapshots = 0

    @classmethod
    def missing(cls) -> str | None:
        """Why this tool cannot run here, as one line, or None."""
        if shutil.which(cls.binary) is None:
            package = PACKAGES.get(cls.binary, cls.binary)
            return f"{cls.binary} is not installed: `apt-get install {package}`"
        return None

    @classmethod
    def version(cls) -> str:
        raise NotImplementedError

    @property
    def tree(self) -> Path:
        """Where the live tree is placed: after `before_tree`, before `setup`."""
        return self.workspace / "tree"

    @property
    def repo(self) -> Path:
        return self.workspace / "repo"

    def before_tree(self) -> None:
        """Untimed preparation needed before the live tree can be placed."""

    def setup(self) -> None:
        """Create the repository (untimed). The live tree is already in place."""

    def reset_repository(self) -> None:
        """Start again from no repository (untimed), keeping the tree: for a repeated first
        snapshot. Caches a tool keeps beside its repository go too."""
        for path in (self.repo, *self.caches()):
            if path.exists():
                shutil.rmtree(path)
        self.snapshots = 0
        self.setup()

    def caches(self) -> list[Path]:
        return []

    def snapshot(self) -> Snapshot:
        """Take one snapshot of the tree (timed)."""
        self.steps += 1
        self.snapshots += 1
        return self._snapshot()

    def _snapshot(self) -> Snapshot:
        raise NotImplementedError

    def after_snapshots(self) -> list[tuple[str, Measurement]]:
        """Timed extra steps a tool needs after its snapshots (Bluegrass's maintain)."""
        return []

    def gc(self) -> Measurement | None:
        """Timed garbage collection / packing before the size is taken, if the tool has one."""
        return None

    def repo_size(self) -> int:
        return data.dir_size(self.repo)

    def _measure(self, cmd: list[str], step: str, **kwargs: object) -> Measurement:
        return measure(cmd, log_dir=self.logs, name=f"{self.steps:02d}-{step}", **kwargs)  # type: ignore[arg-type]


class Floor(Tool):
    """Plain git, the floor: `git add -A --force` and a commit when something changed.

    The repository is kept outside the tree (GIT_DIR/GIT_WORK_TREE) so the tree is not
    copied or modified. --force because the kernel tarball's .gitignore ignores every file.
    Git's own defaults otherwise (core.bigFileThreshold 512 MB, no fsync of loose objects),
    but no automatic gc (see setup).
    """

    name = "floor"
    binary = "git"

    @classmethod
    def version(cls) -> str:
        out = run_quiet(["git", "--version"]).stdout.decode().strip()
        return out.removeprefix("git version ")

    @property
    def repo(self) -> Path:
        return self.workspace / "git"

    def _env(self) -> dict[str, str]:
        return git_env(self.repo, self.tree)

    def setup(self) -> None:
        env = self._env()
        run_quiet(["git", "init", "-q"], env=env, cwd=self.tree)
        # No automatic gc: past 6,700 loose objects `git commit` starts a detached
        # `git gc --auto`, which would run outside the measured process tree while the next
        # steps (and the next tools) are timed. gc is measured on its own, as for the others.
        for key in ("gc.auto", "maintenance.auto"):
            value = "0" if key == "gc.auto" else "false"
            run_quiet(["git", "config", key, value], env=env, cwd=self.tree)

    def _snapshot(self) -> Snapshot:
        env = self._env()
        parts = [
            self._measure(
                ["git", *GIT_IDENTITY, "add", "-A", "--force"], "add", env=env, cwd=self.tree
            )
        ]
        changed = True
        if self.snapshots > 1:
            # A backup tool commits only when something changed: `git commit` on an unchanged
            # index would fail, and an empty commit is not what the floor is about.
            diff = self._measure(
                ["git", "diff-index", "--cached", "--quiet", "HEAD"],
                "diff-index",
                env=env,
                cwd=self.tree,
                ok_codes=(0, 1),
            )
            parts.append(diff)
            changed = diff.returncode == 1
        if changed:
            parts.append(
                self._measure(
                    [
                        "git",
                        *GIT_IDENTITY,
                        "commit",
                        "-q",
                        "--no-verify",
                        "-m",
                        f"s{self.snapshots}",
                    ],
                    "commit",
                    env=env,
                    cwd=self.tree,
                )
            )
        listed = run_quiet(["git", "ls-files", "-z"], env=env, cwd=self.tree).stdout
        return Snapshot(combine(parts), committed=changed, stored_entries=listed.count(b"\0"))

    def gc(self) -> Measurement:
        self.steps += 1
        return self._measure(["git", "gc", "-q"], "gc", env=self._env(), cwd=self.tree)


class Restic(Tool):
    name = "restic"
    binary = "restic"

    @classmethod
    def version(cls) -> str:
        out = run_quiet(["restic", "version"]).stdout.decode().split()
        return out[1] if len(out) > 1 else "?"

    def _env(self) -> dict[str, str]:
        # The cache lives in the workspace, not ~/.cache: runs must not share it. Its size is
        # not counted as repository size (restic can rebuild it from the repository).
        return clean_env(
            RESTIC_REPOSITORY=str(self.repo),
            RESTIC_PASSWORD=RESTIC_PASSWORD,
            RESTIC_CACHE_DIR=str(self.workspace / "restic-cache"),
        )

    def setup(self) -> None:
        run_quiet(["restic", "init", "-q"], env=self._env())

    def caches(self) -> list[Path]:
        return [self.workspace / "restic-cache"]

    def _snapshot(self) -> Snapshot:
        # A fixed --host, so restic always finds the previous snapshot as its parent.
        m = self._measure(
            ["restic", "backup", "-q", "--host", "bluegrass-bench", str(self.tree)],
            "backup",
            env=self._env(),
            cwd=self.tree,
        )
        return Snapshot(m)


class Borg(Tool):
    name = "borg"
    binary = "borg"

    @classmethod
    def version(cls) -> str:
        out = run_quiet(["borg", "--version"]).stdout.decode().split()
        return out[-1] if out else "?"

    def _env(self) -> dict[str, str]:
        # BORG_BASE_DIR keeps borg's files cache, chunks cache and security dir in the
        # workspace instead of ~/.cache and ~/.config.
        return clean_env(
            BORG_REPO=str(self.repo),
            BORG_BASE_DIR=str(self.workspace / "borg-base"),
            BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK="yes",
            BORG_RELOCATED_REPO_ACCESS_IS_OK="yes",
        )

    def setup(self) -> None:
        run_quiet(["borg", "init", "-e", "none"], env=self._env())

    def caches(self) -> list[Path]:
        return [self.workspace / "borg-base"]

    def _snapshot(self) -> Snapshot:
        # Exit 1 is borg's "warning" (for instance a file changed while read); it is noted
        # rather than fatal, as it is in real use.
        m = self._measure(
            ["borg", "create", "--compression", "lz4", f"::snap-{self.snapshots}", "."],
            "create",
            env=self._env(),
            cwd=self.tree,
            ok_codes=(0, 1),
        )
        snap = Snapshot(m)
        if m.returncode == 1:
            snap.notes.append(f"borg create exited 1 (warning), see {m.stderr}")
        return snap

    def gc(self) -> Measurement:
        # borg 1.2 frees space only in `borg compact`; with nothing deleted it does little.
        self.steps += 1
        return self._measure(["borg", "compact"], "compact", env=self._env())


class Bluegrass(Tool):
    """`bluegrass-cloud` as a server runs it: init, a user, a segment folder, commit."""

    name = "bluegrass"
    binary = "bluegrass-cloud"

    @classmethod
    def command(cls) -> str | None:
        # The project's venv first (bench/run.py runs from it), then PATH.
        beside = Path(sys.executable).parent / cls.binary
        if beside.exists():
            return str(beside)
        return shutil.which(cls.binary)

    @classmethod
    def missing(cls) -> str | None:
        if cls.command() is None:
            return f"{cls.binary} is not installed: run `make setup`"
        return None

    @classmethod
    def version(cls) -> str:
        return project_revision()

    @property
    def data_root(self) -> Path:
        return self.workspace / "data"

    @property
    def tree(self) -> Path:
        return self.data_root / "files" / BENCH_USER / self.tree_name

    @property
    def repo(self) -> Path:
        return self.data_root / "repos" / BENCH_USER / f"{self.tree_name}.git"

    def cli(self, *args: str) -> list[str]:
        return [self.command() or self.binary, "--data", str(self.data_root), *args]

    def before_tree(self) -> None:
        # The data root and user first: `user add` refuses a user folder that already exists.
        env = clean_env()
        run_quiet(self.cli("init"), env=env)
        run_quiet(self.cli("user", "add", BENCH_USER), env=env)

    def _snapshot(self) -> Snapshot:
        m = self._measure(
            self.cli("commit", "--user", BENCH_USER, "--segment", self.tree_name, "--json"),
            "commit",
            env=clean_env(),
        )
        return self._parse(m)

    def _parse(self, m: Measurement) -> Snapshot:
        snap = Snapshot(m)
        try:
            report = json.loads(m.output())
        except json.JSONDecodeError as exc:
            snap.notes.append(f"commit --json printed no JSON object ({exc}), see {m.stdout}")
            return snap
        # docs/cli.md: {"segments": [{... "committed": bool ...}], "errors": [...]}; a flat
        # object with "committed" at the top is accepted too.
        item = report
        if isinstance(report, dict) and "committed" not in report and report.get("segments"):
            item = report["segments"][0]
        if not isinstance(item, dict) or "committed" not in item:
            snap.notes.append(f"bluegrass commit --json has no 'committed' field, see {m.stdout}")
            return snap
        snap.committed = bool(item["committed"])
        if isinstance(item.get("files"), int):
            snap.stored_entries = item["files"]
        if isinstance(item.get("changed"), int):
            snap.changed = item["changed"]
        if isinstance(report, dict) and report.get("errors"):
            snap.notes.append(f"bluegrass commit reported errors: {report['errors']}")
        return snap

    def after_snapshots(self) -> list[tuple[str, Measurement]]:
        self.steps += 1
        m = self._measure(self.cli("maintain"), "maintain", env=clean_env())
        return [("maintain", m)]

    def gc(self) -> Measurement:
        # Plain `git gc` on the repository, with the same isolated environment as the floor:
        # the size then compares storage formats, not packing schedules.
        self.steps += 1
        return self._measure(["git", "gc", "-q"], "gc", env=git_env(self.repo), cwd=self.repo)

    def state_size(self) -> int:
        """Bluegrass's working files inside the repository folder (stat cache, check log)."""
        state = self.repo / "bluegrass"
        return data.dir_size(state) if state.is_dir() else 0


ALL_TOOLS: list[type[Tool]] = [Floor, Restic, Borg, Bluegrass]
