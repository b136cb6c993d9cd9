"""bluegrass.core.treestate: one hash that moves with any change to a tree, and the racy rule."""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

import pytest
from bluegrass.core import treestate
from bluegrass.core.treestate import TreeState


def make_tree(root: Path) -> Path:
    (root / "docs" / "deep").mkdir(parents=True)
    (root / "docs" / "report.txt").write_text("version one\n")
    (root / "docs" / "deep" / "notes.md").write_text("# notes\n")
    (root / "top.bin").write_bytes(b"\0" * 100)
    if os.name == "posix":
        (root / "link").symlink_to("top.bin")
    return root


def same_size_edit_with_old_time(root: Path) -> None:
    path = root / "docs" / "report.txt"
    before = path.stat()
    path.write_text("version two\n")  # same length
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size
    assert path.stat().st_mtime_ns == before.st_mtime_ns


CHANGES = {
    "same-size edit, modification time put back": same_size_edit_with_old_time,
    "new empty folder deep down": lambda r: (r / "docs" / "deep" / "empty").mkdir(),
    "file deleted": lambda r: (r / "docs" / "deep" / "notes.md").unlink(),
    "file renamed": lambda r: (r / "top.bin").rename(r / "top2.bin"),
    "mode changed": lambda r: (r / "top.bin").chmod(0o600),
    "file appended": lambda r: (r / "top.bin").open("ab").write(b"x"),
}


def test_an_unchanged_tree_gives_the_same_state(tmp_path):
    root = make_tree(tmp_path / "t")
    first, second = treestate.walk(root), treestate.walk(root)
    assert first.digest == second.digest
    # every entry below the root: 2 folders, 3 files (and the symlink on POSIX)
    assert first.entries == (6 if os.name == "posix" else 5)


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_every_kind_of_change_moves_the_state(tmp_path, change):
    root = make_tree(tmp_path / "t")
    before = treestate.walk(root)
    CHANGES[change](root)
    after = treestate.walk(root)
    assert after.digest != before.digest, change


@pytest.mark.skipif(os.name != "posix", reason="symlinks need privileges on Windows")
def test_a_symlink_pointed_elsewhere_with_a_target_of_the_same_length_moves_the_state(tmp_path):
    root = make_tree(tmp_path / "t")
    (root / "top.bak").write_bytes(b"other")
    before = treestate.walk(root)
    (root / "link").unlink()
    (root / "link").symlink_to("top.bak")
    assert treestate.walk(root).digest != before.digest


def test_identical_trees_in_two_places_differ(tmp_path):
    """Inodes are part of the state: a folder swapped for a copy (another disk mounted on the
    same path, say) is not taken for the one that was synced."""
    a = make_tree(tmp_path / "a")
    b = tmp_path / "b"
    b.mkdir()
    for path in sorted(a.rglob("*")):
        target = b / path.relative_to(a)
        if path.is_symlink():
            target.symlink_to(os.readlink(path))
        elif path.is_dir():
            target.mkdir()
        else:
            target.write_bytes(path.read_bytes())
            st = path.stat()
            os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert treestate.walk(a).digest != treestate.walk(b).digest


def test_a_tree_changed_moments_ago_is_racy_and_an_old_one_is_not(tmp_path):
    fresh = treestate.walk(make_tree(tmp_path / "t"))
    assert fresh.racy
    # The standard library's folder was installed long before this test ran.
    stdlib = Path(sysconfig.get_paths()["stdlib"]) / "json"
    old = treestate.walk(stdlib)
    assert not old.racy and old.entries > 3


def test_a_missing_root_is_an_error(tmp_path):
    with pytest.raises(OSError):
        treestate.walk(tmp_path / "absent")


def test_state_json_round_trips_and_rejects_damage():
    state = TreeState("ab" * 32, 12, False)
    assert TreeState.from_json(state.to_json()) == state
    for bad in (None, [], {"digest": "x", "entries": 1, "racy": False}, {"digest": "ab" * 32}):
        assert TreeState.from_json(bad) is None
