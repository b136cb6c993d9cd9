"""Edits that size and time cannot tell apart, through the real endpoint (issue 11).

The sftp side keeps whole seconds, so bisync takes two times less than a second apart as
equal. A same-size edit within the second of the version it replaces was never copied: the
two laptops stayed different ("in sync" everywhere) until the next edit overwrote one of them.
Each step here writes a new version of one file with the same size and a time in the same
second as the version before, on one laptop or the other, and checks every copy.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.laptop.conftest import Laptop, SftpCloud
from tests.laptop.test_sync import two_laptops

SECOND = 1_000_000_000


def rewrite_within_the_second(path: Path, text: str, fraction_ns: int) -> None:
    """New bytes of the same size, and a time in the same whole second as the old one."""
    old = path.stat()
    assert len(text.encode()) == old.st_size
    path.write_text(text)
    when = old.st_mtime_ns - old.st_mtime_ns % SECOND + fraction_ns
    assert when != old.st_mtime_ns
    os.utime(path, ns=(when, when))


def synced(laptop: Laptop) -> None:
    proc = laptop.run("sync", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_same_size_edits_within_a_second_reach_every_copy(cloud: SftpCloud, new_laptop):
    a, b = two_laptops(cloud, new_laptop)
    da, db = a.home / "docs", b.home / "docs"
    on_cloud = cloud.root / "docs" / "notes.txt"
    (da / "notes.txt").write_text("version 1\n")
    synced(a)
    synced(b)
    assert (db / "notes.txt").read_text() == "version 1\n"

    # B edits within the second of the version it has: B's bisync alone would not see it.
    rewrite_within_the_second(db / "notes.txt", "version 2\n", 900_000_000)
    synced(b)
    assert on_cloud.read_text() == "version 2\n"
    # A's bisync would not see the cloud's new version either (same size, same second).
    synced(a)
    assert (da / "notes.txt").read_text() == "version 2\n"

    # And back the other way.
    rewrite_within_the_second(da / "notes.txt", "version 3\n", 100_000_000)
    synced(a)
    synced(b)
    assert on_cloud.read_text() == (db / "notes.txt").read_text() == "version 3\n"


def test_same_size_edits_on_both_laptops_within_a_second_keep_both(cloud: SftpCloud, new_laptop):
    a, b = two_laptops(cloud, new_laptop)
    da, db = a.home / "docs", b.home / "docs"
    (da / "report.txt").write_text("the report v1\n")
    synced(a)
    synced(b)
    # Both edit before either syncs, in the same second as v1: A first, then B.
    rewrite_within_the_second(da / "report.txt", "A's report v2\n", 300_000_000)
    rewrite_within_the_second(db / "report.txt", "B's report v2\n", 600_000_000)
    synced(a)
    synced(b)
    synced(a)
    texts_a = sorted(p.read_text() for p in da.glob("report*.txt"))
    texts_b = sorted(p.read_text() for p in db.glob("report*.txt"))
    assert texts_a == texts_b == ["A's report v2\n", "B's report v2\n"]
