"""`bluegrass-cloud kit`'s refusals, its file, its key choice and the secrets fingerprint.

No S3 server is needed: a kit is made from the data root alone (the bucket is only named).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bluegrass.cloud.kit import secrets_fingerprint

from tests.cloud.conftest import one_line_error
from tests.cloud.kitsupport import commands, pdf_text
from tests.cloud.test_replica import runner

SERVER_KEY = ("AKIASERVERKEY0000001", "serverSecretKey0123456789abcdefghijklmnop")
KIT_KEY = ("AKIAKITKEY0000000001", "kitSecretKey0123456789abcdefghijklmnopqr")


def replica_toml(**extra: str) -> str:
    lines = [
        "[replica]",
        'endpoint = "https://s3.eu-central-1.amazonaws.com"',
        'bucket = "family-backup"',
        'region = "eu-central-1"',
        'provider = "AWS"',
        f'access_key_id = "{SERVER_KEY[0]}"',
        f'secret_access_key = "{SERVER_KEY[1]}"',
        *(f'{k} = "{v}"' for k, v in extra.items()),
    ]
    return "\n".join(lines) + "\n"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    cloud = runner(root)
    cloud("init")
    cloud("user", "add", "alice")
    cloud("user", "add", "bert")
    (root / "bluegrass-cloud.toml").write_text(replica_toml())
    return root


def test_an_unknown_user_is_one_line_and_writes_nothing(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "kit.pdf"
    line = one_line_error(runner(data)("kit", "nobody", "--out", str(out), check=False))
    assert "unknown user 'nobody'" in line
    assert list(tmp_path.iterdir()) == [data]


def test_no_replica_configured_is_one_line(data: Path, tmp_path: Path) -> None:
    (data / "bluegrass-cloud.toml").write_text("")
    out = tmp_path / "kit.pdf"
    line = one_line_error(runner(data)("kit", "alice", "--out", str(out), check=False))
    assert "no replica configured" in line and "[replica]" in line
    assert not out.exists()


def test_an_out_folder_that_does_not_exist_is_named(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "missing" / "kit.pdf"
    line = one_line_error(runner(data)("kit", "alice", "--out", str(out), check=False))
    assert f"the folder {out.parent} does not exist" in line
    assert not out.parent.exists()


def test_an_existing_out_is_refused_unless_forced_and_the_kit_is_owner_only(
    data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "kit.pdf"
    out.write_bytes(b"an older kit")
    line = one_line_error(runner(data)("kit", "alice", "--out", str(out), check=False))
    assert "already exists" in line and "--force" in line
    assert out.read_bytes() == b"an older kit"
    runner(data)("kit", "alice", "--out", str(out), "--force")
    assert out.read_bytes().startswith(b"%PDF-")
    assert out.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "kit.pdf"]  # no temp left


@pytest.mark.parametrize("args", [["alice", "--server"], []])
def test_a_user_and_server_together_or_neither_is_refused(
    data: Path, tmp_path: Path, args: list[str]
) -> None:
    out = tmp_path / "kit.pdf"
    line = one_line_error(runner(data)("kit", *args, "--out", str(out), check=False))
    assert "either a USER or --server" in line
    assert not out.exists()


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"kit_secret_access_key": KIT_KEY[1]}, "replica.kit_access_key_id"),
        ({"kit_access_key_id": KIT_KEY[0]}, "replica.kit_secret_access_key"),
        (
            {
                "kit_access_key_id": KIT_KEY[0],
                "kit_secret_access_key": KIT_KEY[1],
                "kit_secret_access_key_file": "/nonexistent",
            },
            "replica.kit_secret_access_key",
        ),
        (
            {"kit_access_key_id": KIT_KEY[0], "kit_secret_access_key_file": "/nonexistent/key"},
            "replica.kit_secret_access_key_file: cannot read /nonexistent/key",
        ),
    ],
)
def test_a_half_set_kit_key_is_refused_naming_the_key(
    data: Path, tmp_path: Path, extra: dict[str, str], named: str
) -> None:
    (data / "bluegrass-cloud.toml").write_text(replica_toml(**extra))
    out = tmp_path / "kit.pdf"
    line = one_line_error(runner(data)("kit", "alice", "--out", str(out), check=False))
    assert named in line
    assert not out.exists()


def test_without_a_kit_key_a_users_kit_prints_no_key_and_the_servers_prints_its_own(
    data: Path, tmp_path: Path
) -> None:
    runner(data)("kit", "alice", "--out", str(tmp_path / "a.pdf"))
    runner(data)("kit", "--server", "--out", str(tmp_path / "s.pdf"))
    user, server = pdf_text(tmp_path / "a.pdf"), pdf_text(tmp_path / "s.pdf")
    assert SERVER_KEY[1] not in user and SERVER_KEY[0] not in user
    assert {"KEY_ID=", "KEY_SECRET="} <= set(commands(user)["secrets"])
    assert "No key to read the bucket is printed here" in " ".join(user.split())
    assert f"KEY_SECRET={SERVER_KEY[1]}" in commands(server)["secrets"]
    assert "the server's own key" in " ".join(server.split())


def test_a_kit_key_file_is_read_and_printed(data: Path, tmp_path: Path) -> None:
    secret = tmp_path / "kit-secret"
    secret.write_text(KIT_KEY[1] + "\n")
    (data / "bluegrass-cloud.toml").write_text(
        replica_toml(kit_access_key_id=KIT_KEY[0], kit_secret_access_key_file=str(secret))
    )
    runner(data)("kit", "alice", "--out", str(tmp_path / "a.pdf"))
    lines = commands(pdf_text(tmp_path / "a.pdf"))["secrets"]
    assert f"KEY_ID={KIT_KEY[0]}" in lines and f"KEY_SECRET={KIT_KEY[1]}" in lines
    assert SERVER_KEY[1] not in pdf_text(tmp_path / "a.pdf")


def test_the_fingerprint_changes_exactly_when_a_printed_secret_does(
    data: Path, tmp_path: Path
) -> None:
    toml = data / "bluegrass-cloud.toml"
    first = secrets_fingerprint(data, "alice")
    assert secrets_fingerprint(data, "alice") == first
    assert secrets_fingerprint(data, "bert") != first
    # The kit prints the same fingerprint, so a reader can match paper and panel.
    out = runner(data)("kit", "alice", "--out", str(tmp_path / "a.pdf"), "--json")
    assert json.loads(out.stdout) == {
        "out": str(tmp_path / "a.pdf"),
        "user": "alice",
        "fingerprint": first,
    }
    assert f"Secrets fingerprint {first}" in pdf_text(tmp_path / "a.pdf")
    # Not printed: another user's secrets, how often full bundles are made, the server's key.
    keys = data / "replica" / "keys"
    bert = json.loads((keys / "bert.json").read_text())
    (keys / "bert.json").write_text(json.dumps({**bert, "password": "x" * 43}))
    toml.write_text(replica_toml().replace(SERVER_KEY[1], "another" + SERVER_KEY[1][7:]))
    toml.write_text(toml.read_text() + "full_every = 7\n")
    assert secrets_fingerprint(data, "alice") == first
    # Printed: a kit key, the bucket, the user's own secrets.
    toml.write_text(replica_toml(kit_access_key_id=KIT_KEY[0], kit_secret_access_key=KIT_KEY[1]))
    with_key = secrets_fingerprint(data, "alice")
    assert with_key != first
    toml.write_text(toml.read_text().replace("family-backup", "family-backup-2"))
    moved = secrets_fingerprint(data, "alice")
    assert moved not in (first, with_key)
    alice = json.loads((keys / "alice.json").read_text())
    (keys / "alice.json").write_text(json.dumps({**alice, "password2": "y" * 43}))
    assert secrets_fingerprint(data, "alice") not in (first, with_key, moved)


def test_the_fingerprint_of_an_unknown_user_is_an_error(data: Path) -> None:
    from bluegrass.core.errors import UsageError

    with pytest.raises(UsageError, match="unknown user 'nobody'"):
        secrets_fingerprint(data, "nobody")


def test_an_unencrypted_replica_has_no_passwords_on_the_kit(data: Path, tmp_path: Path) -> None:
    (data / "bluegrass-cloud.toml").write_text(
        replica_toml().replace("[replica]", "[replica]\nencrypt = false")
    )
    runner(data)("kit", "alice", "--out", str(tmp_path / "a.pdf"))
    steps = commands(pdf_text(tmp_path / "a.pdf"))
    assert not [line for line in steps["secrets"] if line.startswith("PASSWORD")]
    assert (
        steps["B2"][0]
        == 'export RCLONE_CONFIG_AREA_TYPE=alias RCLONE_CONFIG_AREA_REMOTE="s3:$BUCKET/$AREA"'
    )
