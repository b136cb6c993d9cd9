"""bluegrass.core.store.browse on its own: path checks, history, search, caches."""

from __future__ import annotations

import pytest
from bluegrass.core.store import Repository
from bluegrass.core.store import browse as store

from tests.panel.conftest import World


@pytest.mark.parametrize(
    ("given", "expected"),
    [(b"", b"."), (b".", b"."), (b"a", b"a"), (b"a/b/", b"a/b"), (b"..a/b..", b"..a/b..")],
)
def test_check_path_accepts_relative_paths(given: bytes, expected: bytes) -> None:
    assert store.check_path(given) == expected


@pytest.mark.parametrize(
    "bad", [b"..", b"a/../b", b"/etc", b"a//b", b"./a", b"a/.", b"a\0b", b"//", b"a/.."]
)
def test_check_path_refuses_everything_that_could_leave_the_segment(bad: bytes) -> None:
    with pytest.raises(store.PathError):
        store.check_path(bad)


def test_history_of_an_escaped_name_is_found_by_its_real_name(world: World) -> None:
    repo = Repository.open(world.root / "repos" / "alice" / "docs.git")
    items = store.history(repo, b".git/config")
    assert [i.commit for i in items] == [world.commits["last_week"]]
    assert items[0].changes[0].path == b".git/config" and items[0].changes[0].status == "A"
    # A name with pathspec magic characters is matched literally, not as a glob.
    assert store.history(repo, b"*") == []


def test_search_reports_present_and_deleted_files(world: World) -> None:
    repo = Repository.open(world.root / "repos" / "alice" / "docs.git")
    found = {f.path: f for f in store.search(repo, "TXT")}
    assert found[b"old-draft.txt"].present is False
    assert found[b"old-draft.txt"].last_commit == world.commits["last_week"]
    assert found[b"letters/to-grandma.txt"].present is True
    assert b"notes.md" not in found


def test_a_known_commit_is_answered_without_running_git(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = Repository.open(world.root / "repos" / "alice" / "docs.git")
    snap = store.resolve(repo, world.commits["first"])
    store.index(repo, snap)

    def no_git(*args: object, **kwargs: object) -> None:
        raise AssertionError("git was run for a cached commit")

    monkeypatch.setattr(repo.git, "run", no_git)
    again = store.resolve(repo, world.commits["first"])
    assert again == snap
    assert b"code/hello.py" in store.index(repo, again).entries
    children = store.index(repo, again).children[b"."]
    kinds = [store.index(repo, again).entries[c].kind for c in children]
    assert kinds == sorted(kinds, key=lambda k: k != "d")  # folders first


def test_select_takes_a_folder_with_everything_under_it(world: World) -> None:
    repo = Repository.open(world.root / "repos" / "alice" / "docs.git")
    idx = store.index(repo, store.resolve(repo, None))
    assert sorted(store.select(idx, b"letters")) == [b"letters", b"letters/to-grandma.txt"]
    assert store.select(idx, b"missing") == {}
    assert len(store.select(idx, b".")) == len(idx.entries)
