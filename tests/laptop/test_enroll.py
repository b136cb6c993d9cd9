"""`bluegrass enroll`: the config it writes, the pinned host key, damaged codes, --force."""

from __future__ import annotations

import configparser
import os
import stat
import subprocess
import tomllib

import pytest

from tests.conftest import VENV_BIN
from tests.laptop.conftest import SECRET, Laptop, SftpCloud, one_line_error, public_key


def test_enroll_writes_config_and_a_pinned_sftp_remote(laptop: Laptop, cloud: SftpCloud):
    out = laptop.run("enroll", cloud.code).stdout
    assert f"Enrolled this computer as alice on 127.0.0.1:{cloud.port}" in out

    config = tomllib.loads((laptop.config_dir / "bluegrass.toml").read_text())
    assert config["server"] == {
        "host": "127.0.0.1",
        "sftp_port": cloud.port,
        "http_port": cloud.enrollment.http_port,
        "user": "alice",
        "device": "d1234abcd",
        "host_key": cloud.enrollment.host_key,
        "url": "",
        # This test cloud's code is one made before the device port: no pinned HTTPS side.
        "device_port": 0,
        "tls_pin": "",
    }
    assert SECRET not in (laptop.config_dir / "bluegrass.toml").read_text()
    # The cloud's HTTP side gets the same password, from its own owner-only file.
    device_password = laptop.config_dir / "device-password"
    assert device_password.read_text() == cloud.enrollment.password + "\n"

    rclone_conf = laptop.config_dir / "rclone.conf"
    parser = configparser.ConfigParser()
    parser.read_string(rclone_conf.read_text())
    remote = dict(parser["bluegrass"])
    known_hosts = laptop.config_dir / "known_hosts"
    assert remote["type"] == "sftp"
    assert remote["host"] == "127.0.0.1"
    assert remote["port"] == str(cloud.port)
    assert remote["user"] == "alice"
    assert remote["known_hosts_file"] == str(known_hosts)
    assert remote["shell_type"] == "unix"
    assert remote["md5sum_command"] == "md5sum"
    assert remote["sha1sum_command"] == "sha1sum"
    # The password is stored obscured, and is the device's "device.secret".
    assert SECRET not in rclone_conf.read_text()
    revealed = subprocess.run(
        [str(VENV_BIN / "rclone"), "reveal", remote["pass"]],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert revealed == cloud.enrollment.password
    assert known_hosts.read_text() == f"[127.0.0.1]:{cloud.port} {public_key(cloud.key)}\n"
    if os.name == "posix":
        assert stat.S_IMODE(rclone_conf.stat().st_mode) == 0o600
        assert stat.S_IMODE(known_hosts.stat().st_mode) == 0o600
        assert stat.S_IMODE(device_password.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    "mangle",
    [
        lambda code: code[:-7],  # cut short when pasted
        lambda code: code.replace("bg1-", "bg2-"),
        lambda code: code[:20] + "!!" + code[22:],
    ],
    ids=["truncated", "wrong-prefix", "garbled"],
)
def test_enroll_refuses_a_damaged_code_with_one_line(laptop: Laptop, cloud: SftpCloud, mangle):
    proc = laptop.run("enroll", mangle(cloud.code), check=False)
    line = one_line_error(proc)
    assert proc.returncode == 2
    assert "enrollment code" in line
    assert not (laptop.config_dir / "rclone.conf").exists()


def test_enrolling_again_needs_force(enrolled: Laptop, cloud: SftpCloud):
    proc = enrolled.run("enroll", cloud.code, check=False)
    assert proc.returncode == 2
    assert "--force" in one_line_error(proc)
    assert "Enrolled" in enrolled.run("enroll", "--force", cloud.code).stdout


def test_enroll_refuses_a_server_presenting_another_host_key(
    laptop: Laptop, cloud: SftpCloud, host_keys
):
    cloud.restart(key=host_keys[1])
    proc = laptop.run("enroll", cloud.code, check=False)
    line = one_line_error(proc)
    assert proc.returncode == 1
    assert "host key does not match" in line
    assert "not enrolled" in line
    assert not (laptop.config_dir / "rclone.conf").exists()
    assert not (laptop.config_dir / "known_hosts").exists()
    assert not any(laptop.config_dir.glob("*.new"))


def test_enroll_while_the_server_is_down_saves_and_says_so(laptop: Laptop, cloud: SftpCloud):
    cloud.stop()
    out = laptop.run("enroll", cloud.code).stdout
    assert "Could not reach the server now" in out
    assert (laptop.config_dir / "rclone.conf").exists()


def test_sync_refuses_a_server_whose_host_key_changed(
    enrolled: Laptop, cloud: SftpCloud, host_keys
):
    docs = enrolled.folder("docs")
    (docs / "secret-plans.txt").write_text("for the real server only\n")
    enrolled.run("segment", "add", "docs", str(docs))
    cloud.restart(key=host_keys[1])  # an impostor on the same address

    proc = enrolled.run("sync", check=False)
    assert proc.returncode == 3
    line = one_line_error(proc)
    assert "host key does not match" in line
    assert "bluegrass enroll --force CODE" in line
    assert not (cloud.root / "docs").exists()  # nothing transferred, not even the check file

    seg = enrolled.segment_status("docs")
    assert seg["last_run"]["outcome"] == "needs-user"
    assert "host key does not match" in seg["last_run"]["message"]
    assert seg["last_run"]["command"] == "bluegrass enroll --force CODE"
    assert seg["last_run"]["files_transferred"] == 0

    cloud.restart(key=host_keys[0])  # the real one is back: syncing resumes
    enrolled.run("sync")
    assert (cloud.root / "docs" / "secret-plans.txt").read_text() == "for the real server only\n"


def test_enrolling_with_another_server_starts_segments_afresh(
    enrolled: Laptop, cloud: SftpCloud, tmp_path, host_keys
):
    docs = enrolled.folder("docs")
    (docs / "a.txt").write_text("a\n")
    enrolled.run("segment", "add", "docs", str(docs))
    enrolled.run("sync")
    assert enrolled.workdir("docs").exists()

    other = SftpCloud(tmp_path / "other-cloud", host_keys[1])
    try:
        out = enrolled.run("enroll", "--force", other.code).stdout
        assert "start afresh" in out
        assert not enrolled.workdir("docs").exists()  # nothing remembered about the old one
        enrolled.run("sync")
        assert (other.root / "docs" / "a.txt").read_text() == "a\n"
        assert enrolled.segment_status("docs")["last_run"]["resync"] is True
    finally:
        other.stop()
