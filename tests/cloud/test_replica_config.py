"""[replica] in bluegrass-cloud.toml: bad values refused with one line naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cloud.conftest import Run, one_line_error

GOOD = {
    "endpoint": '"https://s3.example.com"',
    "bucket": '"bluegrass-backups"',
    "access_key_id": '"AKIAEXAMPLE000000001"',
    "secret_access_key": '"exampleSecretKey0123456789"',
}


def write(data: Path, **values: str) -> Path:
    path = data / "bluegrass-cloud.toml"
    body = "\n".join(f"{k} = {v}" for k, v in {**GOOD, **values}.items() if v is not None)
    path.write_text(f"[replica]\n{body}\n")
    return path


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("endpoint", '"s3.example.com"', "replica.endpoint: expected the S3 endpoint's base URL"),
        ("endpoint", '"https://s3.example.com/path"', "replica.endpoint: expected"),
        ("bucket", '"a"', "replica.bucket: expected an S3 bucket name"),
        ("bucket", '"has space"', "replica.bucket: expected an S3 bucket name"),
        ("provider", '"Amazon"', "replica.provider: expected one of rclone's S3 providers"),
        ("encrypt", '"yes"', "replica.encrypt: expected true or false"),
        ("access_key_id", '"with space"', "replica.access_key_id: expected"),
        ("full_every", "0", "replica.full_every: expected a whole number from 1 to 1000"),
        ("secret_access_key_file", '"relative/path"', "replica.secret_access_key_file: expected"),
        ("colour", '"blue"', "unknown key 'replica.colour'"),
    ],
)
def test_bad_values_are_refused_naming_file_and_key(
    cloud: Run, data: Path, key: str, value: str, expected: str
) -> None:
    cloud("init")
    path = write(data, **{key: value})
    line = one_line_error(cloud("replicate", check=False))
    assert f"{path}: " in line and expected in line, line
    # The same file stops every command, not only replicate: a typo never waits for 03:00.
    assert expected in one_line_error(cloud("commit", check=False))


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"endpoint": None}, "replica.endpoint: expected the S3 endpoint's base URL"),
        ({"bucket": None}, "replica.bucket: expected an S3 bucket name, got nothing"),
        ({"access_key_id": None}, "replica.access_key_id: expected the access key id"),
        ({"secret_access_key": None}, "got neither"),
        ({"secret_access_key_file": '"/etc/hostname"'}, "got both"),
    ],
)
def test_a_half_set_table_is_refused(
    cloud: Run, data: Path, values: dict[str, str | None], expected: str
) -> None:
    cloud("init")
    write(data, **values)  # type: ignore[arg-type]
    line = one_line_error(cloud("replicate", check=False))
    assert expected in line, line


def test_an_unreadable_secret_file_is_named(cloud: Run, data: Path, tmp_path: Path) -> None:
    cloud("init")
    missing = tmp_path / "no-such-secret"
    path = write(data, secret_access_key=None, secret_access_key_file=f'"{missing}"')
    line = one_line_error(cloud("replicate", check=False))
    assert f"{path}: replica.secret_access_key_file: cannot read {missing}" in line
    assert not (data / "replica").exists()  # nothing half written


def test_without_a_replica_replicate_says_so(cloud: Run, data: Path) -> None:
    cloud("init")
    line = one_line_error(cloud("replicate", check=False))
    assert "no replica configured" in line


def test_an_unknown_user_is_refused_before_anything(cloud: Run, data: Path) -> None:
    cloud("init")
    write(data, endpoint='"http://127.0.0.1:9"')
    proc = cloud("replicate", "--user", "nobody", check=False)
    assert "unknown user 'nobody'" in one_line_error(proc)
    assert proc.returncode == 2
    assert not (data / "replica" / "admin.json").exists()
