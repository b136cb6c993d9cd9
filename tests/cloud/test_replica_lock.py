"""The replica on buckets that keep versions or lock them, against moto's standalone S3 server
on loopback (tests/support/moto_s3.py): with Object Lock in compliance mode `replicate` works
(it never deletes nor overwrites) and the server's key cannot remove what it uploaded; the
delete probe of `replica check` tells a locked bucket, a versioned one and a plain one apart,
and touches no object but its own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from bluegrass.core import rclone
from botocore.exceptions import ClientError

from tests.cloud.test_replica import as_json, runner
from tests.support.moto_s3 import REGION, MotoServer, running_moto
from tests.support.s3 import ACCESS_KEY, SECRET_KEY

REPO = Path(__file__).resolve().parents[2]
USER, SEGMENT = "alice", "documents"
PROBE = "bluegrass-delete-probe/"


@pytest.fixture
def moto(tmp_path: Path) -> Iterator[MotoServer]:
    with running_moto(tmp_path) as server:
        yield server


@dataclass
class Cloud:
    data: Path
    moto: MotoServer
    bucket: str
    key: tuple[str, str]  # the server's S3 key

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return runner(self.data)(*args, check=check)

    def stored(self) -> set[tuple[str, str, str]]:
        """(key, version id, etag) of every stored version outside the probe's folder."""
        versions, _ = self.moto.versions(self.bucket)
        return {
            (v["Key"], v["VersionId"], v["ETag"])
            for v in versions
            if not v["Key"].startswith(PROBE)
        }

    def probe_versions(self) -> list[dict[str, Any]]:
        versions, _ = self.moto.versions(self.bucket)
        return [v for v in versions if v["Key"].startswith(PROBE)]


def docs_policy(bucket: str) -> dict[str, Any]:
    """The IAM policy docs/replica.md gives for the server's key, for `bucket`."""
    text = (REPO / "docs" / "replica.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```json\n")[1:]]
    policy = next(b for b in blocks if '"s3:PutObject"' in b)
    return json.loads(policy.replace("BUCKET", bucket))


def replicated(
    moto: MotoServer, tmp_path: Path, bucket: str, *, iam: bool = False, **kind: Any
) -> Cloud:
    """A cloud with one user whose segment has two snapshots, each replicated to `bucket`;
    with `iam`, through a key holding only the policy of docs/replica.md, IAM enforced."""
    moto.make_bucket(bucket, **kind)
    key = (ACCESS_KEY, SECRET_KEY)
    if iam:
        key = moto.iam_key("bluegrass-server", docs_policy(bucket))
        moto.enforce_iam()
    data = tmp_path / "data"
    cloud = Cloud(data, moto, bucket, key)
    cloud("init")
    cloud("user", "add", USER)
    (data / "bluegrass-cloud.toml").write_text(moto.config_text(bucket, key))
    live = data / "files" / USER / SEGMENT
    live.mkdir()
    for day in range(2):
        (live / f"day-{day}.bin").write_bytes(os.urandom(200_000))
        cloud("commit")
        out = as_json(cloud("replicate", "--json"))
        assert out["errors"] == [], out
    return cloud


def server_key_rclone(cloud: Cloud, *args: str) -> subprocess.CompletedProcess[str]:
    """rclone with the server's own key, as a thief holding it would use it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RCLONE_")}
    env.update(
        RCLONE_CONFIG_S_TYPE="s3",
        RCLONE_CONFIG_S_PROVIDER="Other",
        RCLONE_CONFIG_S_ENDPOINT=cloud.moto.endpoint,
        RCLONE_CONFIG_S_ACCESS_KEY_ID=cloud.key[0],
        RCLONE_CONFIG_S_SECRET_ACCESS_KEY=cloud.key[1],
        RCLONE_CONFIG_S_REGION=REGION,
        RCLONE_CONFIG_S_ENV_AUTH="false",
    )
    return subprocess.run(
        [str(rclone.binary()), *args, "--config", "", "--retries", "1"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def every_version(cloud: Cloud) -> dict[tuple[str, str], bytes]:
    s3 = cloud.moto.client()
    return {
        (key, version): s3.get_object(Bucket=cloud.bucket, Key=key, VersionId=version)[
            "Body"
        ].read()
        for key, version, _ in cloud.stored()
    }


def test_a_locked_bucket_takes_the_replica_and_keeps_it(moto: MotoServer, tmp_path: Path) -> None:
    cloud = replicated(moto, tmp_path, "locked", lock_days=1)
    versions, markers = moto.versions("locked")
    # Two replicates and nothing deleted or written twice: one version per name, no marker.
    assert markers == []
    assert [k for k, n in Counter(v["Key"] for v in versions).items() if n > 1] == []
    s3 = moto.client()
    for v in versions:
        head = s3.head_object(Bucket="locked", Key=v["Key"], VersionId=v["VersionId"])
        assert head["ObjectLockMode"] == "COMPLIANCE", v["Key"]

    before = cloud.stored()
    out = as_json(cloud("replica", "check", "--json"))
    assert out["ok"] is True, out
    assert (out["protected"], out["protection"]) == (True, "versions-kept"), out
    assert cloud.stored() == before  # the probe touched nothing of the replica's
    # Its own object, written twice (the overwrite test), kept by the lock like the rest.
    assert len(cloud.probe_versions()) == 2
    text = cloud("replica", "check").stdout
    assert "protected (versions-kept):" in text and "WARNING" not in text

    # A thief with the server's key deletes everything it can, versions included.
    contents = every_version(cloud)
    before_attack = datetime.now(UTC).isoformat()
    server_key_rclone(cloud, "purge", "s:locked")
    server_key_rclone(cloud, "delete", "--s3-versions", "s:locked")
    for key, version in contents:
        with pytest.raises(ClientError) as refused:
            s3.delete_object(Bucket="locked", Key=key, VersionId=version)
        assert refused.value.response["Error"]["Code"] == "AccessDenied"
    assert every_version(cloud) == contents
    # The bucket as it was before the attack, raw, with rclone alone (docs/replica.md).
    as_before = tmp_path / "as-before"
    got = server_key_rclone(
        cloud, "copy", "--s3-version-at", before_attack, "s:locked", str(as_before)
    )
    assert got.returncode == 0, got.stderr
    copied = {
        p.relative_to(as_before).as_posix(): p.read_bytes()
        for p in as_before.rglob("*")
        if p.is_file() and not p.relative_to(as_before).as_posix().startswith(PROBE)
    }
    assert copied == {key: data for (key, _), data in contents.items()}

    # What the thief could do is hide objects behind delete markers; the bucket's owner
    # removes those (docs/replica.md) and the replica is whole again.
    _, markers = moto.versions("locked")
    for marker in markers:
        s3.delete_object(Bucket="locked", Key=marker["Key"], VersionId=marker["VersionId"])
    assert as_json(cloud("replica", "check", "--json"))["ok"] is True
    fresh = tmp_path / "fresh"
    (fresh / "replica").mkdir(parents=True, mode=0o700)
    shutil.copy(cloud.data / "bluegrass-cloud.toml", fresh)
    shutil.copy(cloud.data / "replica" / "admin.json", fresh / "replica")
    rebuilt = as_json(runner(fresh)("rebuild", "--from-replica", "--json"))
    head = as_json(cloud("log", USER, SEGMENT, "--json"))["snapshots"][0]["commit"]
    assert rebuilt["segments"][0]["head"] == head


def test_a_plain_bucket_is_reported_unprotected(moto: MotoServer, tmp_path: Path) -> None:
    cloud = replicated(moto, tmp_path, "plain")
    before = cloud.stored()
    proc = cloud("replica", "check", "--json")
    out = json.loads(proc.stdout)
    assert out["ok"] is True  # the replica is sound; the bucket's protection is a warning
    assert (out["protected"], out["protection"]) == (False, "none"), out
    assert "Object Lock (compliance mode" in out["probe"]
    assert "s3:DeleteObjectVersion" in out["probe"] and "docs/replica.md" in out["probe"]
    assert cloud.stored() == before and cloud.probe_versions() == []

    text = cloud("replica", "check")
    assert text.returncode == 0
    warning = next(line for line in text.stdout.splitlines() if line.startswith("WARNING"))
    assert warning.startswith("WARNING: the bucket is not protected (none):")
    assert "a stolen key could erase the replica" in warning


def test_a_versioned_bucket_without_lock_is_reported_unprotected(
    moto: MotoServer, tmp_path: Path
) -> None:
    cloud = replicated(moto, tmp_path, "versioned", versioned=True)
    before = cloud.stored()
    out = as_json(cloud("replica", "check", "--json"))
    assert out["ok"] is True
    # Versioning keeps what a plain delete hides, but the same key deletes the versions.
    assert (out["protected"], out["protection"]) == (False, "versions-deletable"), out
    assert "deleted the stored versions too" in out["probe"]
    assert "Object Lock" in out["probe"]
    assert cloud.stored() == before  # only the probe's own versions went
    assert cloud.probe_versions() == []
    _, markers = moto.versions("versioned")
    assert markers == []


def test_a_key_without_delete_rights_on_a_versioned_bucket(
    moto: MotoServer, tmp_path: Path
) -> None:
    # The key holds only the policy docs/replica.md gives, and moto enforces it: replicate
    # needs nothing more (no delete, no bucket creation), and nothing it sent can be erased.
    cloud = replicated(moto, tmp_path, "kept", iam=True, versioned=True)
    out = as_json(cloud("replica", "check", "--json"))
    assert out["ok"] is True, out
    assert (out["protected"], out["protection"]) == (True, "delete-refused"), out

    contents = every_version(cloud)
    assert contents
    purge = server_key_rclone(cloud, "purge", "s:kept")
    assert purge.returncode != 0 and "AccessDenied" in purge.stderr
    versions = server_key_rclone(cloud, "delete", "--s3-versions", "s:kept")
    assert versions.returncode != 0 and "AccessDenied" in versions.stderr
    assert every_version(cloud) == contents
    _, markers = moto.versions("kept")
    assert markers == []

    # The probe's leftovers and the refused attack do not stand in the next day's way.
    (cloud.data / "files" / USER / SEGMENT / "day-2.bin").write_bytes(os.urandom(1000))
    cloud("commit")
    out = as_json(cloud("replicate", "--json"))
    alice = next(a for a in out["areas"] if a["area"] == USER)
    assert out["errors"] == [] and alice["new_bundles"] == [f"{SEGMENT}/000003-inc.bundle"]
    assert as_json(cloud("replica", "check", "--json"))["ok"] is True


def test_a_key_without_delete_rights_on_a_plain_bucket_can_still_overwrite(
    moto: MotoServer, tmp_path: Path
) -> None:
    cloud = replicated(moto, tmp_path, "plain", iam=True)
    out = as_json(cloud("replica", "check", "--json"))
    assert out["ok"] is True
    # No delete right, but an overwrite replaces what was there and nothing keeps the old.
    assert (out["protected"], out["protection"]) == (False, "overwritable"), out
    assert "versioning" in out["probe"] and "overwriting" in out["probe"]
