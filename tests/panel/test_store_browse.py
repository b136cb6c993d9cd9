"""bluegrass.core.store.browse on its own: path checks, history, search, caches."""

from __future__ import annotations

import pytest
from bluegrass.core.store import Repository, browse

from tests.panel.conftest import World


@pytest.mark.parametrize(
    ("given", "expected"),
    [(b"", b"."), (b".", b"."), (b"a", b"a"), (b"a/b/", b"a/b"), (b"..a/b..", b"..a/b..")],
)
def test_check_path_accepts_relative_paths(given: bytes, expected: bytes) -> None:
    assert browse.check_path(given) == expected


@pytest.mark.parametrize(
    "bad", [b"..", b"a/../b", b"/etc", b"a//b", b"./a", b"a/.", b"a\0b", b"//", b"a/.."]
)
def test_check_path_refuses_everything_that_could_leave_the_segment(bad: bytes) -> None:
    with pytest.raises(browse.PathError):
        browse.check_path(bad)


def test_history_of_an_escaped_name_is_found_by_its_real_name(world: World) -> None:
    repo = Repository.open(world.root / "repos" / "alice" / "docs.git")
    items = browse.history(repo, b".git/config")
    assert [i.commit for i in items] == [world.commits["last_week"]]
    assert items[0].changes[0].path == b".git/config" and items[0].changes[0].status == "A"
    # A name with pathspec magic characters is matched literally, not as a glob.
    assert browse.history(repo, b"*") == []


def test_search_reports_present_and_deleted_files(world: World) -> None:
    repo = Repository.open(world.root / "repos" / "alice" / "docs.git")
    found = {f.path: f for f in browse.search(repo, "TXT")}
    assert found[b"old-draft.txt"].present is False
    assert found[b"old-draft.txt"].last_commit == world.commits["last_week"]
    assert found[b"letters/to-grandma.txt"].present is True
    assert b"notes.md" not in found


def test_a_known_commit_is_answered_without_running_git(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = Repository.open(world.root / "repos" / "alice" / "docs.git")
    snap = browse.resolve(repo, world.commits["first"])
    browse.index(repo, snap)

    def no_git(*args: object, **kwargs: object) -> None:
        raise AssertionError("git was run for a cached commit")

    monkeypatch.setattr(repo.git, "run", no_git)
    again = browse.resolve(repo, world.commits["first"])
    assert again == snap
    assert b"code/hello.py" in browse.index(repo, again).entries
    children = browse.index(repo, again).children[b"."]
    kinds = [browse.index(repo, again).entries[c].kind for c in children]
    assert kinds == sorted(kinds, key=lambda k: k != "d")  # folders first


def test_select_takes_a_folder_with_everything_under_it(world: World) -> None:
    repo = Repository.open(world.root / "repos" / "alice" / "docs.git")
    idx = browse.index(repo, browse.resolve(repo, None))
    assert sorted(browse.select(idx, b"letters")) == [b"letters", b"letters/to-grandma.txt"]
    assert browse.select(idx, b"missing") == {}
    assert len(browse.select(idx, b".")) == len(idx.entries)
