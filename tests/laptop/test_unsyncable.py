"""The pre-scan: everything that cannot be synced is listed in status, never dropped silently."""

from __future__ import annotations

import os
import socket
import stat
import unicodedata

from tests.laptop.conftest import Laptop, SftpCloud


def test_each_unsyncable_kind_is_reported_and_the_rest_syncs(
    enrolled: Laptop, cloud: SftpCloud, tmp_path, new_laptop
):
    docs = enrolled.folder("docs")
    (docs / "normal.txt").write_text("fine\n")
    sub = docs / "sub"
    sub.mkdir()
    # A socket (bound in a short temporary path, then moved into place: AF_UNIX paths are short).
    sock_path = tmp_path / "s"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock_path))
    server.close()
    sock_path.rename(sub / "app.sock")
    os.mkfifo(docs / "pipe")
    device = False
    try:
        os.mknod(docs / "null-device", stat.S_IFCHR | 0o600, os.makedev(1, 3))
        device = True
    except (PermissionError, OSError):
        pass  # not allowed here (not root): sockets and FIFOs still cover special files
    (docs / "upload.0123abcd.bluegrass-part").write_text("looks in-flight, is mine\n")
    nfc = unicodedata.normalize("NFC", "café.txt")
    nfd = unicodedata.normalize("NFD", "café.txt")
    (docs / nfc).write_text("composed\n")
    (docs / nfd).write_text("decomposed\n")
    (docs / "shortcut.rclonelink").write_text("a regular file with a reserved suffix\n")
    (docs / "Readme.md").write_text("upper\n")
    (docs / "README.md").write_text("lower\n")
    bad = os.fsencode(docs) + b"/bad-\xff-name.txt"
    with open(bad, "wb") as fh:
        fh.write(b"latin-1 era\n")
    enrolled.run("segment", "add", "docs", str(docs))

    proc = enrolled.run("sync")  # the .rclonelink file must not break the run
    assert "cannot be synced (" in proc.stdout

    seg = enrolled.segment_status("docs")
    unsyncable = {(u["path"], u["kind"]) for u in seg["unsyncable"]}
    expected = {
        ("sub/app.sock", "special-file"),
        ("pipe", "special-file"),
        ("upload.0123abcd.bluegrass-part", "partial-name"),
        (nfc, "unicode-duplicate"),
        (nfd, "unicode-duplicate"),
        ("shortcut.rclonelink", "rclonelink-name"),
    }
    if device:
        expected.add(("null-device", "special-file"))
    assert unsyncable == expected
    reasons = {u["path"]: u["reason"] for u in seg["unsyncable"]}
    assert "socket" in reasons["sub/app.sock"]
    assert "FIFO" in reasons["pipe"]
    warnings = {(w["path"], w["kind"]) for w in seg["warnings"]}
    assert warnings == {
        ("bad-\\xff-name.txt", "invalid-utf8"),
        ("README.md", "case-duplicate"),
        ("Readme.md", "case-duplicate"),
    }
    assert seg["needs_attention"] is True
    assert seg["last_run"]["outcome"] == "ok"

    human = enrolled.run("status").stdout
    assert "cannot be synced (6" in human or "cannot be synced (7" in human
    for path, _ in expected:
        assert f"    {path}: " in human

    remote = cloud.root / "docs"
    assert (remote / "normal.txt").read_text() == "fine\n"
    assert (remote / "README.md").exists() and (remote / "Readme.md").exists()
    assert (os.fsencode(remote) + b"/bad-\xff-name.txt") in [
        os.fsencode(remote) + b"/" + n for n in os.listdir(os.fsencode(remote))
    ]  # synced byte-exact
    for absent in ("pipe", "upload.0123abcd.bluegrass-part", "shortcut.rclonelink", "sub/app.sock"):
        assert not (remote / absent).exists(), absent
    cafes = [n for n in os.listdir(remote) if unicodedata.normalize("NFC", n) == nfc]
    assert len(cafes) == 1  # rclone keeps one of the two; the other is listed above

    # Another Linux laptop gets the non-UTF-8 name byte-exact.
    other = new_laptop("laptop-b")
    other.run("enroll", cloud.code)
    other.run("segment", "add", "docs", str(other.folder("docs")))
    other.run("sync")
    with open(os.fsencode(other.home / "docs") + b"/bad-\xff-name.txt", "rb") as fh:
        assert fh.read() == b"latin-1 era\n"

    # Fixed by the user: renamed, so it syncs and leaves the list.
    (docs / "shortcut.rclonelink").rename(docs / "shortcut.txt")
    enrolled.run("sync")
    kinds = {u["kind"] for u in enrolled.segment_status("docs")["unsyncable"]}
    assert "rclonelink-name" not in kinds
    assert (remote / "shortcut.txt").exists()


def test_excluded_paths_are_not_reported(enrolled: Laptop):
    docs = enrolled.folder("docs")
    (docs / "cache").mkdir()
    os.mkfifo(docs / "cache" / "pipe")
    enrolled.run("segment", "add", "docs", str(docs), "--exclude", "cache/")
    enrolled.run("sync")
    assert enrolled.segment_status("docs")["unsyncable"] == []
