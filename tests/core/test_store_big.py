"""A file far above core.bigFileThreshold goes in and comes back intact."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from bluegrass.core.store import Repository, restore, snapshot

from tests.core.conftest import CheckRepo

SIZE = 200 * (1 << 20) + 12345  # not a multiple of any buffer size
CHUNK = 8 << 20


@pytest.mark.slow
def test_200_mb_file_round_trips(
    repo: Repository, src: Path, tmp_path: Path, check_repo: CheckRepo
) -> None:
    digest = hashlib.sha256()
    with (src / "big.bin").open("wb") as out:
        left = SIZE
        while left:
            chunk = os.urandom(min(CHUNK, left))
            digest.update(chunk)
            out.write(chunk)
            left -= len(chunk)
    (src / "small.txt").write_bytes(b"small\n")
    os.utime(src / "big.bin", ns=(1_600_000_000_123_456_789,) * 2)

    result = snapshot(repo, src)
    assert result.committed
    assert result.bytes == SIZE + len(b"small\n")
    check_repo(repo)

    restore(repo, tmp_path / "out")
    restored = tmp_path / "out" / "big.bin"
    assert restored.stat().st_size == SIZE
    check = hashlib.sha256()
    with restored.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            check.update(chunk)
    assert check.digest() == digest.digest()
    for name in ("big.bin", "small.txt"):
        a, b = os.lstat(src / name), os.lstat(tmp_path / "out" / name)
        assert (a.st_mode, a.st_mtime_ns) == (b.st_mode, b.st_mtime_ns)
