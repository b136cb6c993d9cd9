"""A secret made once in a file of its own: owner-only, whole, the same for every process."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

from bluegrass.core import secrets_file

RACE = """
import sys
from pathlib import Path
from bluegrass.core import secrets_file
sys.stdin.readline()  # every process waits here, then all go at once
print(secrets_file.read_or_create(Path(sys.argv[1]), sys.argv[2]))
"""


def test_made_once_private_then_kept(tmp_path: Path) -> None:
    path = tmp_path / "web-session.key"
    assert secrets_file.read_or_create(path, "first secret") == "first secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert secrets_file.read_or_create(path, "second secret") == "first secret"
    assert path.read_text() == "first secret\n"
    assert [p.name for p in tmp_path.iterdir()] == ["web-session.key"]  # no temporary left


def test_processes_starting_together_agree_on_one_secret(tmp_path: Path) -> None:
    path = tmp_path / "key"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, str(path), f"secret-of-{i}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(8)
    ]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    seen = {proc.communicate(timeout=60)[0].strip() for proc in procs}
    assert len(seen) == 1, seen
    assert seen == {path.read_text().strip()}
    assert [p.name for p in tmp_path.iterdir()] == ["key"]
