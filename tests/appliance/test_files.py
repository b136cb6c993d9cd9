"""The latest plain files: rclone from a real `rclone serve sftp --read-only` endpoint."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

from tests.appliance.conftest import (
    USER,
    Appliance,
    CloudData,
    enrollment,
    sftp_server,
)
from tests.appliance.fakecloud import FakeCloud


def test_files_are_pulled_with_a_pinned_host_key_and_sync_machinery_left_out(
    appliance: Appliance, cloud_data: CloudData, fake_cloud: FakeCloud, tmp_path: Path
) -> None:
    folder = cloud_data.files("docs")
    (folder / "sub").mkdir()
    (folder / "sub" / "notes.txt").write_text("notes\n")
    (folder / "letter.partial").write_text("a user's own .partial file is kept\n")
    (folder / ".bluegrass-check").write_text("")
    (folder / "big.iso.0123abcd.bluegrass-part").write_text("an upload in flight\n")
    (folder / "empty").mkdir()
    cloud_data.commit("docs")
    drive = tmp_path / "drive"
    keys = tmp_path / "keys"
    keys.mkdir()
    code = enrollment(fake_cloud.port)
    with sftp_server(cloud_data.root / "files" / USER, USER, code.password, keys) as (port, key):
        appliance.enroll(enrollment(fake_cloud.port, port, key))
        appliance.global_args = ["--drive-dir", str(drive)]

        result = appliance.json("files")

        assert result["outcome"] == "ok", result
        copy = drive / "bluegrass" / USER / "docs"
        assert (copy / "sub" / "notes.txt").read_text() == "notes\n"
        assert (copy / "letter.partial").exists()
        assert (copy / "empty").is_dir()
        assert not (copy / ".bluegrass-check").exists()
        assert not (copy / "big.iso.0123abcd.bluegrass-part").exists()

        # Deleted on the cloud, deleted from the latest copy (history keeps it).
        (folder / "sub" / "notes.txt").unlink()
        assert appliance.json("files")["outcome"] == "ok"
        assert not (copy / "sub" / "notes.txt").exists()

        config = appliance.state / "rclone.conf"
        assert stat.S_IMODE(config.stat().st_mode) == 0o600
        text = config.read_text()
        assert code.secret not in text and "pass = " in text
        assert f"known_hosts_file = {appliance.state / 'known_hosts'}" in text
        assert (appliance.state / "known_hosts").read_text() == f"[127.0.0.1]:{port} {key}\n"
        assert stat.S_IMODE((appliance.state / "enrollment.json").stat().st_mode) == 0o600

        # Another host key than the enrolled one: refused, with an alert.
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")],
            check=True,
        )
        other = " ".join((tmp_path / "other.pub").read_text().split()[:2])
        appliance.enroll(enrollment(fake_cloud.port, port, other))
        refused = appliance.json("files")
        assert refused["outcome"] == "cloud-refused", refused
        assert "host key does not match" in refused["message"]
        assert "cloud-refused" in [a["kind"] for a in appliance.json("alerts")["alerts"]]
