"""What cannot be read is reported, keeps its previous version, and does not stop a snapshot.

The suite runs as root, and root reads a chmod-000 file anyway. So the snapshot under test
runs in a child process whose capability bounding set has lost CAP_DAC_OVERRIDE and
CAP_DAC_READ_SEARCH before it execs: still uid 0 (it owns the repository and every file), but
bound by permission bits like anyone else. As a non-root user plain chmod is enough and
nothing is dropped. The child first proves it cannot read the file, so the test cannot pass
by reading it after all.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

from bluegrass.core.store import Repository, restore, snapshot

from tests.core.conftest import CheckRepo, git_env

PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE = 1
CAP_DAC_READ_SEARCH = 2

CHILD = """
import json, sys
from pathlib import Path
from bluegrass.core.store import Repository, snapshot

repo_path, source, probe = sys.argv[1:4]
try:
    open(probe, "rb").close()
    can_read = True
except PermissionError:
    can_read = False
result = snapshot(Repository.open(Path(repo_path)), Path(source))
print(json.dumps({"probe_readable": can_read, "result": result.to_json()}))
"""


def _lose_root_file_access() -> None:
    """preexec_fn: drop what lets root ignore permission bits (effective after exec)."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def snapshot_without_privilege(repo: Repository, source: Path, probe: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(repo.path), str(source), str(probe)],
        capture_output=True,
        text=True,
        env=git_env(),
        preexec_fn=_lose_root_file_access,  # no threads of ours run now
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert found["probe_readable"] is False, "the child could read a mode-000 file"
    return found["result"]


def test_unreadable_file_and_folder_keep_their_previous_version(
    repo: Repository, src: Path, tmp_path: Path, check_repo: CheckRepo
) -> None:
    (src / "keep.txt").write_bytes(b"keep\n")
    (src / "secret.txt").write_bytes(b"secret version 1\n")
    (src / "locked" / "deeper").mkdir(parents=True)
    (src / "locked" / "inner.txt").write_bytes(b"inner\n")
    (src / "locked" / "deeper" / "x.bin").write_bytes(os.urandom(1000))
    first = snapshot(repo, src)
    assert first.committed and first.commit is not None
    before = repo.manifest(first.commit)

    (src / "secret.txt").write_bytes(b"secret version 2, longer\n")
    (src / "secret.txt").chmod(0o000)
    (src / "locked").chmod(0o000)
    (src / "new.txt").write_bytes(b"new\n")
    (src / "fresh-secret.txt").write_bytes(b"never readable\n")
    (src / "fresh-secret.txt").chmod(0o000)
    try:
        result = snapshot_without_privilege(repo, src, src / "secret.txt")
    finally:
        (src / "locked").chmod(0o755)

    assert result["committed"] is True
    unreadable = {item["path"] for item in result["unreadable"]}
    assert unreadable == {"secret.txt", "locked", "fresh-secret.txt"}
    head = repo.log()[0]
    assert head.commit == result["commit"] != first.commit
    assert head.stats["unreadable"] == 3
    now = repo.manifest(head.commit)
    assert now[b"secret.txt"].oid == before[b"secret.txt"].oid
    for kept in (b"locked/inner.txt", b"locked/deeper", b"locked/deeper/x.bin"):
        assert now[kept] == before[kept]
    assert b"new.txt" in now
    assert b"fresh-secret.txt" not in now
    check_repo(repo)

    restore(repo, tmp_path / "out")
    assert (tmp_path / "out" / "secret.txt").read_bytes() == b"secret version 1\n"
    assert (tmp_path / "out" / "locked" / "inner.txt").read_bytes() == b"inner\n"
    assert not (tmp_path / "out" / "fresh-secret.txt").exists()

    # Readable again: the new content is taken, and nothing is unreadable any more.
    (src / "secret.txt").chmod(0o600)
    (src / "fresh-secret.txt").chmod(0o600)
    again = snapshot(repo, src)
    assert again.committed and again.unreadable == []
    assert repo.read_blob(f"{again.commit}:files/secret.txt") == b"secret version 2, longer\n"
    assert b"fresh-secret.txt" in repo.manifest(again.commit)


def test_unreadable_on_the_first_snapshot(
    repo: Repository, src: Path, check_repo: CheckRepo
) -> None:
    (src / "fine.txt").write_bytes(b"fine\n")
    (src / "closed.txt").write_bytes(b"closed\n")
    (src / "closed.txt").chmod(0o000)
    result = snapshot_without_privilege(repo, src, src / "closed.txt")
    assert result["committed"] is True
    assert [item["path"] for item in result["unreadable"]] == ["closed.txt"]
    entries = repo.manifest(result["commit"])
    assert b"fine.txt" in entries and b"closed.txt" not in entries
    check_repo(repo)
