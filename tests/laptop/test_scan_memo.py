"""The pre-scan's memo: a folder whose times did not change is not read again, and what the
memo gives is exactly what a full scan would."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from bluegrass.laptop import filters, scan

LATER = 10 * 10**9  # a scan "10 s from now": the tree's folders are no longer racy


def build(root: Path) -> None:
    for n in range(5):
        (root / f"album-{n}" / "raw").mkdir(parents=True)
        (root / f"album-{n}" / f"photo-{n}.jpg").write_text("x")
        (root / f"album-{n}" / "raw" / f"photo-{n}.cr2").write_text("x")
    (root / "notes" / "caf\u00e9.txt").parent.mkdir()
    (root / "notes" / "caf\u00e9.txt").write_text("nfc")
    (root / "notes" / "cafe\u0301.txt").write_text("nfd")
    (root / "notes" / "Plan.txt").write_text("x")
    (root / "notes" / "plan.txt").write_text("x")
    (root / "notes" / "x.rclonelink").write_text("not a link")
    if os.name == "posix":
        bad = os.fsencode(root / "notes") + b"/bad-\xff-folder"
        os.mkdir(bad)
        with open(bad + b"/inside.rclonelink", "wb") as f:
            f.write(b"x")
        os.mkfifo(root / "notes" / "pipe")


def found(result: scan.ScanResult) -> tuple[object, ...]:
    return (
        [(f.path, f.kind, f.exclude) for f in result.unsyncable],
        [(f.path, f.kind) for f in result.warnings],
        result.files,
    )


def scan_with_memo(root: Path, memo_file: Path, excludes: filters.Excludes) -> tuple:
    memo = scan.Memo.load(memo_file, scan.memo_key(excludes, True), 3600.0)
    memo.started_ns = time.time_ns() + LATER
    result = scan.scan(root, excludes, links=True, memo=memo)
    memo.save(memo_file)
    return result, memo


def test_unchanged_folders_are_not_read_again_and_give_the_same_findings(tmp_path: Path) -> None:
    root, memo_file = tmp_path / "segment", tmp_path / "scan-memo.json"
    root.mkdir()
    build(root)
    none = filters.Excludes([])
    full = scan.scan(root, none, links=True)
    assert full.unsyncable and full.warnings  # the tree has something of each

    first, memo = scan_with_memo(root, memo_file, none)
    assert found(first) == found(full)
    assert memo.reused == 0
    folders = len(memo.new)
    assert folders >= 13

    again, memo = scan_with_memo(root, memo_file, none)
    assert found(again) == found(full)
    assert memo.reused == folders  # every folder came from the memo

    # A new name deep down changes its folder's time: that folder is read, the rest is not.
    (root / "album-3" / "raw" / "y.rclonelink").write_text("new")
    changed, memo = scan_with_memo(root, memo_file, none)
    assert found(changed) == found(scan.scan(root, none, links=True))
    assert ("album-3/raw/y.rclonelink", "rclonelink-name", "/album-3/raw/y.rclonelink") in (
        found(changed)[0]
    )
    assert memo.reused == folders - 1


def test_other_excludes_or_an_old_memo_mean_a_full_scan(tmp_path: Path) -> None:
    root, memo_file = tmp_path / "segment", tmp_path / "scan-memo.json"
    root.mkdir()
    build(root)
    scan_with_memo(root, memo_file, filters.Excludes([]))
    skip = filters.Excludes(["album-1/"])
    result, memo = scan_with_memo(root, memo_file, skip)
    assert memo.reused == 0
    assert found(result) == found(scan.scan(root, skip, links=True))
    assert not any(path.startswith("album-1") for path, *_ in found(result)[0])
    # Older than its time limit: not used.
    stale = scan.Memo.load(memo_file, scan.memo_key(skip, True), 0.0)
    assert stale.old == {}


def test_a_folder_changed_moments_ago_is_read_and_not_remembered(tmp_path: Path) -> None:
    root, memo_file = tmp_path / "segment", tmp_path / "scan-memo.json"
    root.mkdir()
    (root / "a.txt").write_text("x")
    memo = scan.Memo.load(memo_file, scan.memo_key(filters.Excludes([]), True), 3600.0)
    scan.scan(root, filters.Excludes([]), links=True, memo=memo)  # the scan happens "now"
    assert memo.new == {}


@pytest.mark.parametrize("damage", ["", "{", '{"version": 1}', '{"version": 99}'])
def test_a_damaged_memo_means_a_full_scan(tmp_path: Path, damage: str) -> None:
    memo_file = tmp_path / "scan-memo.json"
    memo_file.write_text(damage)
    memo = scan.Memo.load(memo_file, scan.memo_key(filters.Excludes([]), True), 3600.0)
    assert memo.old == {}
