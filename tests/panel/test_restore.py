"""Restoring through the backend: into the live tree (cloud), into a drive folder (Pi)."""

from __future__ import annotations

import shutil

from bluegrass.core.store import Repository

from tests.panel.conftest import World, csrf_of, login, make_app


def test_restore_a_file_into_the_live_tree_keeps_the_current_version(alice, world: World) -> None:
    live = world.live["alice/docs"] / "letters" / "to-grandma.txt"
    live.write_text("edited by mistake\n")
    commit = world.commits["last_week"]
    page = alice.get(f"/s/alice/docs/restore/letters/to-grandma.txt?at={commit}")
    assert 'value="live"' in page.get_data(as_text=True)
    token = csrf_of(alice, "/")
    resp = alice.post(
        f"/s/alice/docs/restore/letters/to-grandma.txt?at={commit}",
        data={"csrf_token": token, "target": "live"},
    )
    assert resp.status_code == 302, resp.get_data(as_text=True)
    assert live.read_text() == "Dear Grandma,\nversion two (last week)\n"
    # The mistaken edit is in history: the backend snapshotted before writing.
    repo = Repository.open(world.root / "repos" / "alice" / "docs.git")
    newest = repo.log()[0]
    assert "before restore" in repo.git.out(["show", "-s", "--format=%B", newest.commit])
    assert repo.read_blob(f"{newest.commit}:files/letters/to-grandma.txt") == b"edited by mistake\n"
    flashed = alice.get(resp.headers["Location"]).get_data(as_text=True)
    assert "kept in a new snapshot" in flashed


def test_restore_a_folder_makes_it_exactly_as_it_was(alice, world: World) -> None:
    docs = world.live["alice/docs"]
    (docs / "code" / "new.py").write_text("print('new')\n")
    (docs / "code" / "hello.py").unlink()
    token = csrf_of(alice, "/")
    resp = alice.post(
        f"/s/alice/docs/restore/code?at={world.commits['first']}",
        data={"csrf_token": token, "target": "live"},
    )
    assert resp.status_code == 302
    assert sorted(p.name for p in (docs / "code").iterdir()) == ["hello.py"]
    # Nothing is left behind in the data root's scratch space.
    assert list((world.root / "tmp").iterdir()) == []


def test_restore_refuses_to_follow_a_symlink_out_of_the_live_tree(
    alice, world: World, tmp_path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    docs = world.live["alice/docs"]
    shutil.rmtree(docs / "letters")
    (docs / "letters").symlink_to(outside)
    token = csrf_of(alice, "/")
    resp = alice.post(
        "/s/alice/docs/restore/letters/to-grandma.txt",
        data={"csrf_token": token, "target": "live"},
    )
    assert resp.status_code == 400 and "symbolic link" in resp.get_data(as_text=True)
    assert list(outside.iterdir()) == []


def test_pi_restores_into_a_new_folder_on_the_drive(world: World) -> None:
    (world.root / "drive").mkdir()
    client = make_app(world, "pi").test_client()
    login(client, "alice")
    commit = world.commits["last_week"]
    page = client.get(f"/s/alice/docs/restore/letters?at={commit}").get_data(as_text=True)
    assert 'value="drive"' in page and 'value="live"' not in page
    token = csrf_of(client, "/")
    url = f"/s/alice/docs/restore/letters?at={commit}"
    live = client.post(url, data={"csrf_token": token, "target": "live"})
    assert live.status_code == 400  # not a target on the Pi
    for bad in ("../escape", ".hidden", "a/b"):
        resp = client.post(url, data={"csrf_token": token, "target": "drive", "folder": bad})
        assert resp.status_code == 400, bad
    resp = client.post(url, data={"csrf_token": token, "target": "drive", "folder": "letters-old"})
    assert resp.status_code == 302
    restored = world.root / "drive" / "restored" / "letters-old" / "to-grandma.txt"
    assert restored.read_text() == "Dear Grandma,\nversion two (last week)\n"
    again = client.post(url, data={"csrf_token": token, "target": "drive", "folder": "letters-old"})
    assert again.status_code == 400 and "already exists" in again.get_data(as_text=True)
