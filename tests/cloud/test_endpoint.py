"""The sync endpoint, attacked and used with the real rclone client over real sftp on loopback.

Every test runs `bluegrass-cloud run` on free ports with alice and bob enrolled. Bob's
folder holds docs/bob.txt ("bob's secret"); each attack checks alice gets nothing of it:
no listing, no read, no write.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
from pathlib import Path

from tests.cloud.conftest import Site, tree_state
from tests.cloud.server import Client, enrolled

SECRET = "bob's secret"


def assert_refused(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode != 0, proc.stdout
    assert "unable to authenticate" in proc.stderr, proc.stderr
    assert SECRET not in proc.stdout


def test_right_password_writes_into_the_users_segment(site: Site, tmp_path: Path) -> None:
    local = tmp_path / "laptop-docs"
    (local / "sub").mkdir(parents=True)
    (local / "letter.txt").write_text("dear bob\n")
    (local / "sub" / "deep.bin").write_bytes(b"\0\1\2" * 1000)
    proc = site.client.rclone(
        "alice", "copy", str(local), ":sftp:docs", password=site.alice.password
    )
    assert proc.returncode == 0, proc.stderr
    tree = site.data / "files" / "alice" / "docs"
    assert (tree / "letter.txt").read_text() == "dear bob\n"
    assert (tree / "sub" / "deep.bin").read_bytes() == b"\0\1\2" * 1000
    listing = site.client.rclone("alice", "lsf", "-R", ":sftp:", password=site.alice.password)
    assert sorted(listing.stdout.split()) == [
        "docs/",
        "docs/alice.txt",
        "docs/letter.txt",
        "docs/sub/",
        "docs/sub/deep.bin",
    ]
    # The server answers md5sum itself: bisync can compare checksums.
    sums = site.client.rclone(
        "alice", "md5sum", ":sftp:docs/letter.txt", password=site.alice.password
    )
    assert sums.stdout.split()[0] == hashlib.md5(b"dear bob\n").hexdigest()
    entry = site.auth_log()[-1]
    assert (entry["outcome"], entry["user"], entry["client_ip"]) == (
        "accepted",
        "alice",
        "127.0.0.1",
    )
    assert (entry["method"], entry["device"], entry["via"]) == (
        "password",
        site.alice.device,
        "sftp",
    )
    assert site.alice.code.secret not in (site.data / "logs" / "auth.log").read_text()


def test_bad_credentials_get_nothing(site: Site) -> None:
    wrong_secret = f"{site.alice.device}.{'x' * 43}"
    attempts = [
        ("alice", wrong_secret, "wrong secret"),
        ("bob", site.alice.password, "unknown device for this user"),  # alice's device as bob
        ("alice", "not-a-device-password", "password not of the form DEVICE.SECRET"),
        ("../bob", site.alice.password, "invalid user name"),
        ("carol", site.alice.password, "unknown device for this user"),
    ]
    for number, (user, password, reason) in enumerate(attempts, 2):
        source = f"127.0.1.{number}"
        assert_refused(
            site.client.rclone(user, "lsf", "-R", ":sftp:", password=password, source=source)
        )
        assert_refused(
            site.client.rclone(user, "cat", ":sftp:docs/bob.txt", password=password, source=source)
        )
        # The first login from each address is checked; the second may meet a device id
        # locked by the earlier ones (decision 120).
        mine = [e for e in site.auth_log() if e["client_ip"] == source]
        assert len(mine) == 2 and all(e["outcome"] == "refused" for e in mine), mine
        assert mine[0]["reason"] == reason, mine
        assert password not in json.dumps(mine)


def test_paths_outside_the_users_folder_are_not_reachable(site: Site, tmp_path: Path) -> None:
    before = tree_state(site.data / "files" / "bob")
    pw = site.alice.password
    outside = [
        ":sftp:../bob",
        ":sftp:../bob/docs",
        ":sftp:../../files/bob/docs",
        ":sftp:/",
        ":sftp:/etc",
        ":sftp:/../bob",
        f":sftp:{site.data}/files/bob/docs",
        ":sftp:docs/../../bob/docs",
    ]
    for remote in outside:
        listing = site.client.rclone("alice", "lsf", "-R", remote, password=pw)
        assert "bob.txt" not in listing.stdout, (remote, listing.stdout)
        assert "passwd" not in listing.stdout, (remote, listing.stdout)
        read = site.client.rclone("alice", "cat", remote.rstrip("/") + "/bob.txt", password=pw)
        assert SECRET not in read.stdout, remote
    # "/" is alice's own root: she sees her files there and nothing else.
    assert site.client.rclone("alice", "lsf", ":sftp:/", password=pw).stdout.split() == ["docs/"]
    payload = tmp_path / "pwned.txt"
    payload.write_text("written by alice\n")
    for remote in (":sftp:../bob/docs/", f":sftp:{site.data}/files/bob/docs/", ":sftp:/../bob/"):
        site.client.rclone("alice", "copy", str(payload), remote, password=pw)
    assert tree_state(site.data / "files" / "bob") == before
    # Whatever the traversal attempts wrote stayed inside alice's own folder.
    for path in (site.data / "files").rglob("pwned.txt"):
        assert path.is_relative_to(site.data / "files" / "alice"), path


def test_symlink_to_another_users_folder_blocks_the_login(site: Site, tmp_path: Path) -> None:
    bob_docs = site.data / "files" / "bob" / "docs"
    before = tree_state(bob_docs)
    link = site.data / "files" / "alice" / "docs" / "to-bob"
    link.symlink_to(bob_docs)
    pw = site.alice.password
    payload = tmp_path / "bob.txt"
    payload.write_text("overwritten by alice\n")
    # Without the check, rclone's local backend would write through the link into bob's folder.
    assert_refused(
        site.client.rclone("alice", "copy", str(payload), ":sftp:docs/to-bob/", password=pw)
    )
    assert_refused(site.client.rclone("alice", "cat", ":sftp:docs/to-bob/bob.txt", password=pw))
    assert tree_state(bob_docs) == before
    entry = site.auth_log()[-1]
    assert entry["outcome"] == "refused" and entry["user"] == "alice", entry
    assert "symlink to a folder" in str(entry["reason"]) and str(link) in str(entry["reason"])
    # Bob is not affected, and alice is back once the link is gone.
    assert (
        site.client.rclone("bob", "lsf", ":sftp:docs", password=site.bob.password).returncode == 0
    )
    link.unlink()
    assert site.client.rclone("alice", "lsf", ":sftp:docs", password=pw).returncode == 0


def test_symlinks_to_files_are_neither_read_nor_written_through(site: Site, tmp_path: Path) -> None:
    bob_docs = site.data / "files" / "bob" / "docs"
    before = tree_state(bob_docs)
    link = site.data / "files" / "alice" / "docs" / "bobs-file"
    link.symlink_to(bob_docs / "bob.txt")
    (site.data / "files" / "alice" / "etc").symlink_to("/etc/passwd")
    pw = site.alice.password
    listing = site.client.rclone("alice", "lsf", "-R", ":sftp:", password=pw)
    assert listing.returncode == 0, listing.stderr
    assert "bobs-file" not in listing.stdout and "etc" not in listing.stdout
    for remote in (":sftp:docs/bobs-file", ":sftp:etc"):
        read = site.client.rclone("alice", "cat", remote, password=pw)
        assert read.returncode != 0 and SECRET not in read.stdout and "root:" not in read.stdout
    payload = tmp_path / "bobs-file"
    payload.write_text("overwritten by alice\n")
    site.client.rclone("alice", "copyto", str(payload), ":sftp:docs/bobs-file", password=pw)
    assert tree_state(bob_docs) == before
    # The upload replaced alice's link with her own file; bob's file is untouched.
    assert not link.is_symlink() and link.read_text() == "overwritten by alice\n"


def test_revoked_device_is_refused_at_once(site: Site) -> None:
    second = enrolled(site.cloud("device", "add", "alice", "--name", "old phone", "--json").stdout)
    assert site.client.rclone("alice", "lsf", ":sftp:", password=second.password).returncode == 0
    site.cloud("device", "revoke", "alice", second.device)
    # rclone would keep serving the cached login for minutes; run restarts the endpoint.
    site.server.wait_log("credentials revoked or removed: restarting")
    site.server.wait_log("sync endpoint ready", count=2)
    assert_refused(site.client.rclone("alice", "lsf", "-R", ":sftp:", password=second.password))
    assert site.auth_log()[-1]["reason"] == "device revoked"
    assert (
        site.client.rclone("alice", "lsf", ":sftp:", password=site.alice.password).returncode == 0
    )


def make_key(tmp_path: Path, name: str) -> Path:
    key = tmp_path / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True
    )
    return key


def test_key_login(site: Site, tmp_path: Path) -> None:
    registered = make_key(tmp_path, "alice-key")
    stranger = make_key(tmp_path, "stranger-key")
    site.cloud("device", "add-key", "alice", site.alice.device, f"{registered}.pub")
    ok = site.client.rclone("alice", "lsf", "-R", ":sftp:", key_file=registered)
    assert ok.returncode == 0, ok.stderr
    assert "docs/alice.txt" in ok.stdout.split()
    entry = site.auth_log()[-1]
    assert (entry["method"], entry["device"]) == ("key", site.alice.device), entry
    # A key registered for alice is not a key for bob, and an unknown key is nobody's.
    assert_refused(site.client.rclone("bob", "lsf", ":sftp:", key_file=registered))
    assert site.auth_log()[-1]["reason"] == "key not registered"
    assert_refused(site.client.rclone("alice", "lsf", ":sftp:", key_file=stranger))
    assert site.auth_log()[-1]["reason"] == "key not registered"


def test_repeated_failures_lock_out_the_address_not_the_user(site: Site) -> None:
    # Decision 120: failures count per source and per device id, never per user name.
    wrong = f"{site.alice.device}.{'y' * 43}"
    for _ in range(6):
        assert_refused(
            site.client.rclone("alice", "lsf", ":sftp:", password=wrong, source="127.0.2.1")
        )
    log = site.auth_log()
    assert sum(e.get("reason") == "wrong secret" for e in log) == 5
    assert "rate-limited: 5 failed logins from this address" in str(log[-1]["reason"])
    # From another address alice's device gets in: her name is not locked.
    right = site.client.rclone(
        "alice", "lsf", ":sftp:", password=site.alice.password, source="127.0.2.2"
    )
    assert right.returncode == 0, right.stderr

    # Guessing across user names from one address locks that address out, for every name.
    for n in range(5):
        guess = f"d0000000{n}.{'y' * 43}"
        site.client.rclone(f"guess{n}", "lsf", ":sftp:", password=guess, source="127.0.2.3")
    assert_refused(
        site.client.rclone("bob", "lsf", ":sftp:", password=site.bob.password, source="127.0.2.3")
    )
    assert "rate-limited: 5 failed logins from this address" in str(site.auth_log()[-1]["reason"])

    # Ten minutes later (the failures' times moved back) bob gets in from there.
    with sqlite3.connect(site.data / "bluegrass.db") as db:
        db.execute("UPDATE login_failures SET at = at - 601")
    again = site.client.rclone(
        "bob", "lsf", ":sftp:", password=site.bob.password, source="127.0.2.3"
    )
    assert again.returncode == 0, again.stderr


def test_host_key_is_pinned(site: Site, tmp_path: Path) -> None:
    other = make_key(tmp_path, "not-the-host-key")
    (tmp_path / "elsewhere").mkdir()
    pin = " ".join(Path(f"{other}.pub").read_text().split()[:2])
    wrong_pin = Client(site.server.sftp_port, tmp_path / "elsewhere", pin)
    proc = wrong_pin.rclone("alice", "lsf", ":sftp:", password=site.alice.password)
    assert proc.returncode != 0
    assert "key mismatch" in proc.stderr or "knownhosts" in proc.stderr, proc.stderr
