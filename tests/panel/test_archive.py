"""Downloads of folders, files and whole segments: streamed zip and tar.gz, exact content."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest
from bluegrass.core.store import Repository, browse
from bluegrass.panel import archive

from tests.panel.conftest import World


def tree_of(root: Path) -> dict[str, tuple[str, int, bytes]]:
    """path -> (kind, permission bits, content or link target), for comparing trees."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("l", 0, os.readlink(path).encode())
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("d", stat.S_IMODE(st.st_mode), b"")
            else:
                out[rel] = ("f", stat.S_IMODE(st.st_mode), path.read_bytes())
    return out


def test_folder_as_zip_unpacks_to_the_source_tree(alice, world: World, tmp_path: Path) -> None:
    resp = alice.get("/s/alice/docs/archive/?format=zip")
    assert resp.status_code == 200 and resp.is_streamed
    assert "Content-Length" not in resp.headers  # produced on the fly
    assert resp.headers["Content-Disposition"].startswith('attachment; filename="docs-')
    data = resp.get_data()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        infos = {i.filename: i for i in zf.infolist()}
        assert all(i.compress_type == zipfile.ZIP_STORED for i in infos.values())
        assert "docs/empty/" in infos and "docs/.git/config" in infos
        link = infos["docs/link"]
        assert stat.S_ISLNK(link.external_attr >> 16) and zf.read(link) == b"notes.md"
        assert (infos["docs/run.sh"].external_attr >> 16) & 0o777 == 0o755
        source = world.live["alice/docs"]
        mtime = (source / "notes.md").stat().st_mtime
        assert infos["docs/notes.md"].extra.startswith(b"UT\x05\x00\x01")
        assert int.from_bytes(infos["docs/notes.md"].extra[5:9], "little") == int(mtime)
        target = tmp_path / "unzipped"
        for info in zf.infolist():
            dest = target / info.filename
            mode = info.external_attr >> 16
            if info.is_dir():
                dest.mkdir(parents=True, exist_ok=True)
            elif stat.S_ISLNK(mode):
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.symlink_to(zf.read(info).decode())
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(zf.read(info))
                dest.chmod(stat.S_IMODE(mode))
        for info in zf.infolist():
            if info.is_dir():
                (target / info.filename).chmod(stat.S_IMODE(info.external_attr >> 16))
    assert tree_of(target / "docs") == tree_of(source)


def test_segment_as_tar_gz_is_exact_including_mtimes(alice, world: World, tmp_path: Path) -> None:
    resp = alice.get("/s/alice/docs/archive/?format=tar.gz")
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(resp.get_data()), mode="r:gz") as tf:
        tf.extractall(tmp_path / "x", filter="tar")  # the tar filter keeps modes and links
    source = world.live["alice/docs"]
    assert tree_of(tmp_path / "x" / "docs") == tree_of(source)
    for name in ("notes.md", "letters/to-grandma.txt", "run.sh"):
        # PAX records carry sub-second times; tarfile gives them back to the microsecond.
        got = (tmp_path / "x" / "docs" / name).stat().st_mtime_ns
        assert abs(got - (source / name).stat().st_mtime_ns) < 2_000, name


def test_archive_at_an_old_commit_and_of_one_file(alice, world: World) -> None:
    commit = world.commits["last_week"]
    resp = alice.get(f"/s/alice/docs/archive/letters?format=zip&at={commit}")
    with zipfile.ZipFile(io.BytesIO(resp.get_data())) as zf:
        assert zf.namelist() == ["letters/", "letters/to-grandma.txt"]
        assert zf.read("letters/to-grandma.txt") == b"Dear Grandma,\nversion two (last week)\n"
    resp = alice.get(f"/s/alice/docs/archive/old-draft.txt?format=tar.gz&at={commit}")
    with tarfile.open(fileobj=io.BytesIO(resp.get_data()), mode="r:gz") as tf:
        assert tf.getnames() == ["old-draft.txt"]
    assert alice.get("/s/alice/docs/archive/?format=rar").status_code == 400


def test_large_entries_get_zip64_records(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    # A real >4 GiB file would take minutes; lowering zipfile's limit exercises the same
    # ZIP64 code path (per-entry extra fields and the ZIP64 end records) on small data.
    repo = Repository.open(world.root / "repos" / "alice" / "docs.git")
    snap = browse.resolve(repo, None)
    idx = browse.index(repo, snap)
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 20)
    monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 3)
    data = b"".join(archive.stream(repo, browse.select(idx, b"letters"), b"letters", b"l", "zip"))
    assert b"PK\x06\x06" in data  # ZIP64 end of central directory record
    monkeypatch.undo()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.read("l/to-grandma.txt") == b"Dear Grandma,\nversion four (today)\n"


def test_closing_a_download_early_stops_the_producer(world: World) -> None:
    import psutil

    def cat_files() -> set[int]:
        # git processes of ours, finished or not: one that has written everything and exited
        # stays a zombie until the archive's producer reaps it.
        found = set()
        for child in psutil.Process().children(recursive=True):
            try:
                if child.name() == "git":
                    found.add(child.pid)
            except psutil.Error:
                continue  # reaped while we looked
        return found

    repo = Repository.open(world.root / "repos" / "alice" / "docs.git")
    idx = browse.index(repo, browse.resolve(repo, None))
    before = cat_files()
    stream = archive.stream(repo, browse.select(idx, b"."), b".", b"docs", "tar.gz")
    first = next(stream)
    assert first[:2] == b"\x1f\x8b"
    started = cat_files() - before
    assert started, "no git is feeding the archive"
    stream.close()  # what the WSGI server does when the client goes away
    # close() returns after the git process is reaped: none of them may be left.
    assert not (cat_files() & started)
