"""Users' devices and credentials from the command line: codes, hashes, keys, bad input."""

from __future__ import annotations

import json
import sqlite3
import stat
import subprocess
from pathlib import Path

import pytest
from bluegrass.core import enrollment

from tests.cloud.conftest import Run, one_line_error, tree_state
from tests.cloud.server import enrolled

NEW_SUBCOMMANDS = [
    ["device"],
    ["device", "add"],
    ["device", "list"],
    ["device", "revoke"],
    ["device", "add-key"],
    ["run"],
]


@pytest.mark.parametrize("words", NEW_SUBCOMMANDS, ids=" ".join)
def test_new_subcommands_have_help(cloud: Run, words: list[str]) -> None:
    proc = cloud(*words, "--help")
    assert proc.stdout.startswith("usage: bluegrass-cloud")


def test_user_add_prints_a_working_enrollment_code(cloud: Run, data: Path) -> None:
    cloud("init")
    (data / "bluegrass-cloud.toml").write_text(
        '[server]\naddress = "backup.example.org"\nsftp_port = 2222\nhttp_port = 8443\n'
    )
    out = json.loads(cloud("user", "add", "alice", "--device-name", "laptop", "--json").stdout)
    assert set(out) == {"user", "files", "device", "device_name", "enrollment_code"}
    assert (out["user"], out["files"]) == ("alice", str(data / "files" / "alice"))
    assert out["device_name"] == "laptop"
    code = enrollment.decode(out["enrollment_code"])
    assert (code.server, code.sftp_port, code.http_port) == ("backup.example.org", 2222, 8443)
    assert (code.url, code.http_base) == ("", "http://backup.example.org:8443")
    assert (code.user, code.device) == ("alice", out["device"])
    pub = (data / "ssh_host_ed25519_key.pub").read_text().split()
    assert code.host_key == f"{pub[0]} {pub[1]}"
    # The secret is in the code and nowhere on the server; only its argon2id hash is.
    stored = b"".join(p.read_bytes() for p in data.rglob("*") if p.is_file())
    assert code.secret.encode() not in stored
    with sqlite3.connect(data / "bluegrass.db") as db:
        (hashed,) = db.execute("SELECT secret_hash FROM devices").fetchone()
    assert hashed.startswith("$argon2id$")
    text = cloud("user", "add", "bob").stdout
    assert "shown once" in text and "bg1-" in text


def test_the_public_url_goes_into_enrollment_codes(cloud: Run, data: Path) -> None:
    cloud("init")
    config = data / "bluegrass-cloud.toml"
    config.write_text(
        '[server]\naddress = "backup.example.org"\npublic_url = "https://backup.example.org"\n'
    )
    out = json.loads(cloud("user", "add", "alice", "--json").stdout)
    code = enrollment.decode(out["enrollment_code"])
    assert code.url == "https://backup.example.org"
    assert code.http_base == "https://backup.example.org"

    # A URL with a path, credentials or another scheme is refused, naming the file and key.
    for bad in ("https://backup.example.org/git", "ftp://backup.example.org", "https://a:b@host"):
        config.write_text(f'[server]\npublic_url = "{bad}"\n')
        proc = cloud("user", "add", "bob", check=False)
        assert proc.returncode != 0
        error = one_line_error(proc)
        assert str(config) in error and "server.public_url" in error, error
    assert "bob" not in cloud("user", "list").stdout


def test_host_key_is_made_once_and_private(cloud: Run, data: Path) -> None:
    first = json.loads(cloud("init", "--json").stdout)["host_key"]
    key = data / "ssh_host_ed25519_key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert json.loads(cloud("init", "--json").stdout)["host_key"] == first
    cloud("user", "add", "alice")
    assert (data / "ssh_host_ed25519_key.pub").read_text().startswith(first)


def test_devices_add_list_revoke(cloud: Run, data: Path) -> None:
    cloud("init")
    first = enrolled(cloud("user", "add", "alice", "--json").stdout)
    second_out = json.loads(cloud("device", "add", "alice", "--json").stdout)
    assert set(second_out) == {"user", "device", "device_name", "enrollment_code"}
    assert second_out["device_name"] == "device 2"
    second = enrolled(json.dumps(second_out))
    assert second.device != first.device and second.code.secret != first.code.secret
    cloud("user", "add", "bob")
    listed = json.loads(cloud("device", "list", "alice", "--json").stdout)["devices"]
    assert [(d["device"], d["name"], d["revoked"]) for d in listed] == [
        (first.device, "first device", None),
        (second.device, "device 2", None),
    ]
    assert set(listed[0]) == {"user", "device", "name", "created", "revoked", "keys"}
    assert len(json.loads(cloud("device", "list", "--json").stdout)["devices"]) == 3
    revoked = json.loads(cloud("device", "revoke", "alice", second.device, "--json").stdout)
    assert revoked["device"] == second.device and revoked["revoked"]
    again = cloud("device", "revoke", "alice", second.device)
    assert "already revoked" in again.stdout
    listed = json.loads(cloud("device", "list", "alice", "--json").stdout)["devices"]
    assert listed[1]["revoked"] == revoked["revoked"] and listed[0]["revoked"] is None
    # A device id is only good together with its own user.
    line = one_line_error(cloud("device", "revoke", "bob", first.device, check=False))
    assert f"user 'bob' has no device '{first.device}'" in line


def test_add_key(cloud: Run, data: Path, tmp_path: Path) -> None:
    cloud("init")
    alice = enrolled(cloud("user", "add", "alice", "--json").stdout)
    key = tmp_path / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "alice@laptop", "-f", str(key)],
        check=True,
    )
    out = json.loads(
        cloud("device", "add-key", "alice", alice.device, f"{key}.pub", "--json").stdout
    )
    fingerprint = subprocess.run(
        ["ssh-keygen", "-l", "-f", f"{key}.pub"], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    assert out["added"] == [
        {"type": "ssh-ed25519", "fingerprint": fingerprint, "comment": "alice@laptop"}
    ]
    again = json.loads(
        cloud("device", "add-key", "alice", alice.device, f"{key}.pub", "--json").stdout
    )
    assert again["added"] == []
    keys = json.loads(cloud("device", "list", "alice", "--json").stdout)["devices"][0]["keys"]
    assert [k["fingerprint"] for k in keys] == [fingerprint]


def test_bad_input_is_one_line_and_writes_nothing(cloud: Run, data: Path, tmp_path: Path) -> None:
    cloud("init")
    alice = enrolled(cloud("user", "add", "alice", "--json").stdout)
    key = tmp_path / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    garbage = tmp_path / "garbage.pub"
    garbage.write_text("ssh-ed25519 not-base64!!\n")
    mislabelled = tmp_path / "mislabelled.pub"
    mislabelled.write_text("ssh-rsa " + (key.with_suffix(".pub")).read_text().split()[1] + "\n")
    with_options = tmp_path / "options.pub"
    with_options.write_text('command="rm -rf /" ' + key.with_suffix(".pub").read_text())
    before = tree_state(data)
    cases = [
        (["user", "add", "alice"], "user 'alice' already exists"),
        (["user", "add", "Alice"], "invalid user name 'Alice'"),
        (["user", "add", "carol", "--device-name", ""], "invalid device name"),
        (["user", "add", "carol", "--device-name", "a\tb"], "invalid device name"),
        (["device", "add", "nobody"], "unknown user 'nobody'"),
        (["device", "add", "alice", "--name", " x"], "invalid device name"),
        (["device", "list", "nobody"], "unknown user 'nobody'"),
        (["device", "revoke", "alice", "d00000000"], "has no device 'd00000000'"),
        (["device", "revoke", "nobody", alice.device], "unknown user 'nobody'"),
        (["device", "add-key", "alice", alice.device, str(key)], "holds a private key"),
        (["device", "add-key", "alice", alice.device, str(garbage)], "not valid"),
        (["device", "add-key", "alice", alice.device, str(mislabelled)], "not 'ssh-rsa'"),
        (["device", "add-key", "alice", alice.device, str(with_options)], "options"),
        (["device", "add-key", "alice", alice.device, str(tmp_path / "no")], "cannot read"),
        (["device", "add-key", "alice", "d00000000", f"{key}.pub"], "has no device"),
    ]
    for args, expected in cases:
        line = one_line_error(cloud(*args, check=False))
        assert expected in line, (args, line)
    assert tree_state(data) == before
    (data / "bluegrass-cloud.toml").write_text('[server]\naddress = "http://x/"\n')
    line = one_line_error(cloud("user", "add", "carol", check=False))
    assert "server.address: expected a host name or an IP address" in line
    assert not (data / "files" / "carol").exists()


def test_revoked_device_takes_no_keys(cloud: Run, data: Path, tmp_path: Path) -> None:
    cloud("init")
    alice = enrolled(cloud("user", "add", "alice", "--json").stdout)
    key = tmp_path / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    cloud("device", "revoke", "alice", alice.device)
    line = one_line_error(
        cloud("device", "add-key", "alice", alice.device, f"{key}.pub", check=False)
    )
    assert "is revoked" in line


def test_user_remove_removes_accounts_rows(cloud: Run, data: Path) -> None:
    cloud("init")
    cloud("user", "add", "alice")
    cloud("device", "add", "alice")
    cloud("user", "remove", "alice")
    assert json.loads(cloud("device", "list", "--json").stdout) == {"devices": []}
    with sqlite3.connect(data / "bluegrass.db") as db:
        assert db.execute("SELECT count(*) FROM users").fetchone() == (0,)
    # A folder deleted by hand leaves devices behind; a new user of that name must not
    # inherit them: add refuses until remove has cleared them.
    old = enrolled(cloud("user", "add", "bob", "--json").stdout)
    (data / "files" / "bob").rmdir()
    assert "still has devices" in one_line_error(cloud("user", "add", "bob", check=False))
    cloud("user", "remove", "bob")
    new = enrolled(cloud("user", "add", "bob", "--json").stdout)
    devices = json.loads(cloud("device", "list", "bob", "--json").stdout)["devices"]
    assert [d["device"] for d in devices] == [new.device] != [old.device]


def test_segment_commit_at_is_checked(cloud: Run, data: Path) -> None:
    cloud("init")
    (data / "bluegrass-cloud.toml").write_text('[segments."alice/docs"]\ncommit_at = "3am"\n')
    line = one_line_error(cloud("user", "add", "alice", check=False))
    assert 'segments.alice/docs.commit_at: expected a local time "HH:MM"' in line


def test_in_flight_upload_is_reported_not_committed(cloud: Run, data: Path, tmp_path: Path) -> None:
    cloud("init")
    cloud("user", "add", "alice")
    tree = data / "files" / "alice" / "docs"
    (tree / "sub").mkdir(parents=True)
    (tree / "report.pdf.1a2b3c4d.bluegrass-part").write_bytes(b"half an upl")
    (tree / "sub" / "x.partial").write_text("the user's own file\n")
    (tree / "notes.1a2b3c4d.partial").write_text("rclone's default suffix is not ours\n")
    out = json.loads(cloud("commit", "--json").stdout)["segments"][0]
    assert out["committed"] and out["added"] == 2
    assert out["skipped"] == [
        {"path": "report.pdf.1a2b3c4d.bluegrass-part", "reason": "upload in progress"}
    ]
    cloud("restore", "alice", "docs", "--to", str(tmp_path / "back"))
    restored = sorted(
        p.relative_to(tmp_path / "back").as_posix() for p in (tmp_path / "back").rglob("*")
    )
    assert restored == ["notes.1a2b3c4d.partial", "sub", "sub/x.partial"]
