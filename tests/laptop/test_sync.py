"""Two laptops, one cloud: edits on both sides, conflicts, deletes, renames, empty folders."""

from __future__ import annotations

import os
import time

from tests.laptop.conftest import Laptop, SftpCloud

CHECK = ".bluegrass-check"
SIDECARS = ".bluegrass-meta"  # the devices' metadata files, on the cloud side only


def files_of(root) -> dict[str, bytes]:
    """Every file under root (symlinks as their target) except the sync's own files."""
    found = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.name == CHECK or rel.split("/")[0] == SIDECARS:
            continue
        if path.is_symlink():
            found[rel] = b"-> " + os.readlink(path).encode()
        elif path.is_file():
            found[rel] = path.read_bytes()
    return found


def dirs_of(root) -> set[str]:
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_dir() and not p.is_symlink() and p.relative_to(root).parts[0] != SIDECARS
    }


def aged(path, seconds_ago: float) -> None:
    when = time.time() - seconds_ago
    os.utime(path, (when, when))


def two_laptops(cloud: SftpCloud, new_laptop) -> tuple[Laptop, Laptop]:
    a, b = new_laptop("laptop-a"), new_laptop("laptop-b")
    for laptop in (a, b):
        laptop.run("enroll", cloud.code)
        laptop.run("segment", "add", "docs", str(laptop.folder("docs")))
    return a, b


def test_edits_deletes_renames_and_empty_folders_reach_the_other_laptop(
    cloud: SftpCloud, new_laptop
):
    a, b = two_laptops(cloud, new_laptop)
    da, db = a.home / "docs", b.home / "docs"
    (da / "notes.txt").write_text("first draft\n")
    (da / "old-name.txt").write_text("to be renamed\n")
    (da / "doomed.txt").write_text("to be deleted\n")
    (da / "sub" / "deeper").mkdir(parents=True)
    (da / "sub" / "deeper" / "data.bin").write_bytes(bytes(range(256)) * 100)
    (da / "empty" / "nested-empty").mkdir(parents=True)
    (da / "link").symlink_to("notes.txt")

    out = a.run("sync").stdout
    assert "docs: ok" in out
    assert "first sync of this segment" in out
    b.run("sync")  # laptop B joins: its empty folder is filled from the cloud
    assert files_of(db) == files_of(da)
    assert (db / "link").is_symlink() and os.readlink(db / "link") == "notes.txt"
    assert {"empty", "empty/nested-empty"} <= dirs_of(db)
    assert (cloud.root / "docs" / "link.rclonelink").read_text() == "notes.txt"
    assert (cloud.root / "docs" / CHECK).is_file() and (da / CHECK).is_file()

    # B edits, renames, deletes and adds; A edits another file at the same time.
    (db / "notes.txt").write_text("second draft, from B\n")
    (db / "old-name.txt").rename(db / "new-name.txt")
    (db / "doomed.txt").unlink()
    (db / "from-b").mkdir()
    (db / "from-b" / "b.txt").write_text("B was here\n")
    (da / "sub" / "deeper" / "data.bin").write_bytes(b"A changed this")
    b.run("sync")
    a.run("sync")
    b.run("sync")
    expected = {
        "from-b/b.txt": b"B was here\n",
        "link": b"-> notes.txt",
        "new-name.txt": b"to be renamed\n",
        "notes.txt": b"second draft, from B\n",
        "sub/deeper/data.bin": b"A changed this",
    }
    assert files_of(da) == expected
    assert files_of(db) == expected
    assert files_of(cloud.root / "docs") == {
        **{k: v for k, v in expected.items() if k != "link"},
        "link.rclonelink": b"notes.txt",
    }
    status = a.segment_status("docs")["last_run"]
    assert status["outcome"] == "ok"
    assert status["resync"] is False

    # Empty folders persist on the sftp side: across a server restart they are still there,
    # and removing one on a laptop removes it everywhere.
    cloud.restart()
    a.run("sync")
    assert (cloud.root / "docs" / "empty" / "nested-empty").is_dir()
    assert (da / "empty" / "nested-empty").is_dir()
    (db / "empty" / "nested-empty").rmdir()
    b.run("sync")
    a.run("sync")
    assert not (da / "empty" / "nested-empty").exists()
    assert (da / "empty").is_dir()


def test_a_conflict_keeps_both_versions(cloud: SftpCloud, new_laptop):
    a, b = two_laptops(cloud, new_laptop)
    da, db = a.home / "docs", b.home / "docs"
    (da / "report.txt").write_text("original\n")
    a.run("sync")
    b.run("sync")

    (da / "report.txt").write_text("A's edit, made earlier\n")
    aged(da / "report.txt", 600)
    (db / "report.txt").write_text("B's edit, made later\n")
    aged(db / "report.txt", 60)
    a.run("sync")
    out = b.run("sync").stdout
    assert "1 conflict copy kept" in out
    assert "report.conflict1.txt" in out
    a.run("sync")

    for folder in (da, db, cloud.root / "docs"):
        assert (folder / "report.txt").read_text() == "B's edit, made later\n"  # newer wins
        assert (folder / "report.conflict1.txt").read_text() == "A's edit, made earlier\n"
    last = b.segment_status("docs")["last_run"]
    assert last["outcome"] == "ok"
    assert last["conflicts"] == 1


def test_a_mass_delete_is_stopped_reported_and_nothing_is_lost(enrolled: Laptop, cloud: SftpCloud):
    docs = enrolled.folder("docs")
    for i in range(10):
        (docs / f"f{i}.txt").write_text(f"file {i}\n")
    enrolled.run("segment", "add", "docs", str(docs))
    enrolled.run("sync")
    memo = enrolled.state_dir / "segments" / "docs" / "scan-memo.json"
    assert memo.is_file()  # an "ok" run keeps its scan for the next one
    for i in range(8):
        (docs / f"f{i}.txt").unlink()

    proc = enrolled.run("sync", check=False)
    assert proc.returncode == 3
    assert not memo.exists()  # any other outcome: the next scan reads every folder
    assert "bluegrass sync docs --confirm-deletes" in proc.stderr
    assert "nothing was deleted" in proc.stdout
    assert len(list((cloud.root / "docs").glob("f*.txt"))) == 10  # nothing lost

    seg = enrolled.segment_status("docs")
    last = seg["last_run"]
    assert last["outcome"] == "needs-user"
    assert last["command"] == "bluegrass sync docs --confirm-deletes"
    assert "8 of" in last["message"] and "on this computer" in last["message"]
    assert "bluegrass sync docs --resync" in last["action"]  # the way back, too
    assert seg["needs_attention"] is True
    human = enrolled.run("status").stdout
    assert "needs you" in human
    assert "    bluegrass sync docs --confirm-deletes" in human

    # Undo instead: --resync brings the deleted files back from the cloud.
    enrolled.run("sync", "docs", "--resync")
    assert len(list(docs.glob("f*.txt"))) == 10

    # Delete again and confirm: now the deletion goes through.
    for i in range(8):
        (docs / f"f{i}.txt").unlink()
    assert enrolled.run("sync", check=False).returncode == 3
    enrolled.run("sync", "docs", "--confirm-deletes")
    assert sorted(p.name for p in (cloud.root / "docs").glob("f*.txt")) == ["f8.txt", "f9.txt"]
    assert enrolled.segment_status("docs")["last_run"]["deletes"] == 8


def test_changing_excludes_resyncs_without_deleting(enrolled: Laptop, cloud: SftpCloud):
    docs = enrolled.folder("docs")
    (docs / "keep.txt").write_text("keep\n")
    (docs / "scratch.tmp").write_text("scratch\n")
    enrolled.run("segment", "add", "docs", str(docs), "--exclude", "*.tmp")
    enrolled.run("sync")
    assert not (cloud.root / "docs" / "scratch.tmp").exists()
    assert (cloud.root / "docs" / "keep.txt").exists()

    # Edit the exclude list by hand: the next sync notices and resyncs (nothing deleted).
    config = enrolled.config_dir / "bluegrass.toml"
    config.write_text(config.read_text().replace('exclude = ["*.tmp"]', 'exclude = ["*.txt"]'))
    out = enrolled.run("sync").stdout
    assert "the segment's excludes changed" in out
    assert (cloud.root / "docs" / "scratch.tmp").exists()
    assert (cloud.root / "docs" / "keep.txt").exists()
    assert (docs / "keep.txt").exists()
    assert enrolled.run("sync").stdout.startswith("docs: ok: nothing to copy")


def test_a_terminal_gets_a_progress_bar_and_a_pipe_plain_lines(enrolled: Laptop):
    import pty
    import subprocess

    docs = enrolled.folder("docs")
    enrolled.run("segment", "add", "docs", str(docs))
    enrolled.run("sync")
    enrolled.set_sync_option("bandwidth_limit", "4M")

    (docs / "one.bin").write_bytes(os.urandom(6 * 1024 * 1024))
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        enrolled.command("sync"),
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env={**enrolled.env, "COLUMNS": "120"},
        cwd=enrolled.home,
    )
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(primary, 4096)
        except OSError:  # EIO: the terminal's other end is closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(primary)
    assert proc.wait(timeout=60) == 0
    shown = b"".join(chunks).decode()
    assert "\rdocs [" in shown and "%" in shown and "files" in shown
    assert "docs: ok: 1 file (6.3 MB) copied" in shown

    (docs / "two.bin").write_bytes(os.urandom(6 * 1024 * 1024))
    piped = enrolled.run("sync")
    assert "\r" not in piped.stderr
    assert any(
        line.startswith("docs: ") and " of " in line and "files" in line
        for line in piped.stderr.splitlines()
    ), piped.stderr


def test_a_joining_laptops_older_copy_is_kept_aside_not_overwritten(cloud: SftpCloud, new_laptop):
    """A second laptop joins with its own, older version of a file: the first sync (a resync)
    gives it the cloud's newer one and moves its own into the segment's state folder."""
    a, b = two_laptops(cloud, new_laptop)
    (a.folder("docs") / "plan.txt").write_text("A's plan, the newer\n")
    a.run("sync")
    mine = b.folder("docs") / "plan.txt"
    mine.write_text("B's old plan\n")
    aged(mine, 3600)
    (b.folder("docs") / "own.txt").write_text("only on B\n")

    out = b.run("sync").stdout
    assert mine.read_text() == "A's plan, the newer\n"
    [kept] = list((b.workdir("docs").parent / "replaced").glob("*/plan.txt"))
    assert kept.read_text() == "B's old plan\n"
    assert "1 file of this computer differed from the cloud's newer copy" in out
    assert str(kept.parent) in out
    assert (cloud.root / "docs" / "own.txt").read_text() == "only on B\n"
    assert files_of(a.folder("docs")) != files_of(b.folder("docs"))  # A has not synced yet
    a.run("sync")
    assert files_of(a.folder("docs")) == files_of(b.folder("docs"))
