"""The metadata sidecars (bluegrass.core.syncmeta): format, which record wins, and applying
them to a real folder and to a snapshot's walk. The sync itself is in tests/e2e/test_exact.py."""

from __future__ import annotations

import gzip
import os
import stat
from pathlib import Path

import pytest
from bluegrass.core import syncmeta
from bluegrass.core.store import Repository, snapshot
from bluegrass.core.syncmeta import Record, SidecarError, Sidecars

NS = 1_700_000_000_123_456_789


def test_the_format_round_trips_and_is_the_same_bytes_for_the_same_records():
    records = {
        b"a.txt": Record("f", 0o600, NS, 5, NS - 7),
        b"bad\xffname": Record("f", None, NS + 1, 0, NS),
        b"dir": Record("d", 0o700, NS + 2, 0, NS),
        b"dir/link": Record("l", 0o777, NS + 3, 6, NS),
    }
    data = syncmeta.serialize(records)
    assert syncmeta.parse(data) == records
    assert syncmeta.serialize(dict(reversed(records.items()))) == data  # no write when equal


@pytest.mark.parametrize(
    "raw",
    [
        b"not gzip at all",
        gzip.compress(b"bluegrass-manifest 1\0"),
        gzip.compress(b"bluegrass-meta 1\0f 644 1 2 3\t../escape\0"),
        gzip.compress(b"bluegrass-meta 1\0f 644 1 2 3\t/abs\0"),
        gzip.compress(b"bluegrass-meta 1\0x 644 1 2 3\tkind\0"),
        gzip.compress(b"bluegrass-meta 1\0f 64z 1 2 3\tmode\0"),
        gzip.compress(b"bluegrass-meta 1\0f 644 1 2 3\tno-terminator"),
    ],
)
def test_a_damaged_or_hostile_sidecar_is_refused(raw: bytes):
    with pytest.raises(SidecarError):
        syncmeta.parse(raw)


def test_a_gzip_bomb_is_refused_before_it_is_inflated(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(syncmeta, "MAX_SIDECAR", 1 << 20)
    bomb = gzip.compress(b"bluegrass-meta 1\0" + b"\0" * (8 << 20))
    with pytest.raises(SidecarError, match="larger than"):
        syncmeta.parse(bomb)


def test_setuid_and_setgid_never_come_from_a_sidecar():
    data = syncmeta.serialize({b"x": Record("f", 0o6755, NS, 1, NS)})
    assert syncmeta.parse(data)[b"x"].mode == 0o755


def test_a_record_describes_an_entry_only_with_its_size_and_sftps_second():
    r = Record("f", 0o755, 7_258_118_400_987_654_321, 3, NS)  # year 2200
    wrapped = (7_258_118_400 % (1 << 32)) * 1_000_000_000  # what sftp kept: 2063
    assert r.describes("f", 3, wrapped)
    assert not r.describes("f", 4, wrapped)  # edited since: another size
    assert not r.describes("f", 3, wrapped + 1_000_000_000)  # another second
    assert not r.describes("l", 3, wrapped)
    assert Record("d", 0o700, 1, 0, 1).describes("d", 4096, 12345)  # folders: the kind alone


def test_the_latest_change_wins_and_a_device_without_bits_keeps_anothers():
    sidecars = Sidecars(
        {
            "old": {b"s": Record("f", 0o644, NS, 2, 100)},
            "new": {b"s": Record("f", 0o755, NS + 5, 2, 200)},
            "windows": {b"s": Record("f", None, NS + 9, 2, 300)},
            "stale": {b"s": Record("f", 0o600, NS, 99, 900)},  # an older size: never applies
        }
    )
    got = sidecars.resolve(b"s", "f", 2, NS - NS % 1_000_000_000)
    assert got is not None
    assert (got.source, got.mtime_ns, got.mode) == ("windows", NS + 9, 0o755)


def test_describe_keeps_the_change_time_of_an_unchanged_entry(tmp_path: Path):
    (tmp_path / "a").write_text("a")
    (tmp_path / syncmeta.FOLDER.decode()).mkdir()
    (tmp_path / ".bluegrass-check").write_text("check")
    first = syncmeta.describe(tmp_path, {}, now_ns=NS * 2)
    assert set(first) == {b"a"}  # not the folder itself, the check file or the sidecars
    taken = {b"a": Record(first[b"a"].kind, first[b"a"].mode, first[b"a"].mtime_ns, 1, 42)}
    assert syncmeta.describe(tmp_path, taken, now_ns=NS * 2)[b"a"].changed_ns == 42
    (tmp_path / "a").chmod(0o700)
    again = syncmeta.describe(tmp_path, taken, now_ns=NS * 2)[b"a"]
    assert again.mode == 0o700 and again.changed_ns == os.lstat(tmp_path / "a").st_ctime_ns


def test_apply_puts_bits_and_times_back_and_leaves_newer_local_state(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "run.sh").write_text("#!\n")
    (tmp_path / "mine.txt").write_text("mine\n")
    (tmp_path / "link").symlink_to("sub/run.sh")
    second = (tmp_path / "sub" / "run.sh").stat().st_mtime_ns // 1_000_000_000 * 1_000_000_000
    os.utime(tmp_path / "sub" / "run.sh", ns=(second, second))
    link_ns = os.lstat(tmp_path / "link").st_mtime_ns
    mine_ns = (tmp_path / "mine.txt").stat().st_mtime_ns
    sidecars = Sidecars(
        {
            "other": {
                b"sub": Record("d", 0o750, NS, 0, 50),
                b"sub/run.sh": Record("f", 0o755, second + 123, 3, 50),
                b"link": Record("l", 0o777, link_ns - link_ns % 10**9 + 5, 10, 50),
                b"mine.txt": Record("f", 0o600, mine_ns, 5, 50),
            },
            "me": {b"mine.txt": Record("f", 0o644, mine_ns, 5, 60)},  # mine is newer
        }
    )
    applied = syncmeta.apply(tmp_path, sidecars, own="me")
    run = (tmp_path / "sub" / "run.sh").stat()
    assert (stat.S_IMODE(run.st_mode), run.st_mtime_ns) == (0o755, second + 123)
    assert os.lstat(tmp_path / "sub").st_mtime_ns == NS
    assert stat.S_IMODE(os.lstat(tmp_path / "sub").st_mode) == 0o750
    assert os.lstat(tmp_path / "link").st_mtime_ns == link_ns - link_ns % 10**9 + 5
    assert stat.S_IMODE((tmp_path / "mine.txt").stat().st_mode) != 0o600
    assert set(applied.adopted) == {b"sub", b"sub/run.sh", b"link"}
    assert applied.adopted[b"sub/run.sh"].changed_ns == 50


def test_a_snapshot_of_a_live_tree_stores_what_the_devices_had(tmp_path: Path):
    live = tmp_path / "live"
    live.mkdir()
    (live / ".bluegrass-check").write_text("check")
    (live / "run.sh").write_text("#!\n")
    (live / "link.rclonelink").write_bytes(b"/etc/hostname")
    (live / "not-a-link.rclonelink").write_bytes(b"x" * 5000)  # too long for a link
    second = 1_700_000_000_000_000_000
    for name in ("run.sh", "link.rclonelink"):
        os.utime(live / name, ns=(second, second))
    folder = live / syncmeta.FOLDER.decode()
    syncmeta.write(
        folder / "laptop.meta",
        {
            b"run.sh": Record("f", 0o755, second + 42, 3, 1),
            b"link": Record("l", 0o777, second + 7, 13, 1),
        },
    )
    (folder / "broken.meta").write_bytes(b"garbage")
    repo = Repository.init(tmp_path / "repo.git")
    result = snapshot(repo, live, adjust=syncmeta.adjust_snapshot)
    entries = repo.manifest(result.commit)
    assert set(entries) == {b".", b"run.sh", b"link", b"not-a-link.rclonelink"}
    assert (entries[b"run.sh"].mode, entries[b"run.sh"].mtime_ns) == (0o755, second + 42)
    assert (entries[b"link"].kind, entries[b"link"].mtime_ns) == ("l", second + 7)
    assert repo.git.out(["cat-file", "blob", entries[b"link"].oid]) == "/etc/hostname"
    assert result.skipped == [(".bluegrass-meta/broken.meta", result.skipped[0][1])]
    assert "metadata not read" in result.skipped[0][1]
    # Unchanged folder: nothing new; a chmod recorded by a device alone is a new snapshot.
    assert not snapshot(repo, live, adjust=syncmeta.adjust_snapshot).committed
    syncmeta.write(folder / "laptop.meta", {b"run.sh": Record("f", 0o700, second + 42, 3, 2)})
    again = snapshot(repo, live, adjust=syncmeta.adjust_snapshot)
    assert again.committed and repo.manifest(again.commit)[b"run.sh"].mode == 0o700


def test_a_time_cut_to_the_second_never_replaces_a_finer_one_in_that_second():
    """A laptop that got a file without any record of it (an older client sent it) describes
    it with sftp's whole second; the finer time, on the cloud or in an older record, stays."""
    whole = NS - NS % 1_000_000_000
    sidecars = Sidecars(
        {
            "origin": {b"f": Record("f", 0o640, NS, 3, 10)},
            "joined": {b"f": Record("f", 0o600, whole, 3, 20)},  # newer, to the second
        }
    )
    got = sidecars.resolve(b"f", "f", 3, whole)
    assert got is not None and (got.mode, got.mtime_ns) == (0o600, NS)
    alone = Sidecars({"joined": {b"f": Record("f", 0o600, whole, 3, 20)}})
    got = alone.resolve(b"f", "f", 3, NS + 5)  # the entry itself is finer
    assert got is not None and got.mtime_ns == NS + 5
