"""moto's standalone S3 server on loopback for tests: versioning and Object Lock, which
`rclone serve s3` (tests/support/s3.py) does not have.

`moto_server` (from `moto[server]` in requirements-dev.txt) runs as a process of its own on a
free port, and the test waits for it by polling until it answers S3's ListBuckets. Its state
is in memory: a new server per test. Buckets are made through boto3 (installed with moto) as a
bucket's owner would make them; Bluegrass itself reaches the server only through rclone.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from tests.support.net import free_port, wait_for_port
from tests.support.s3 import ACCESS_KEY, SECRET_KEY

REGION = "us-east-1"
MOTO_SERVER = Path(sys.executable).parent / "moto_server"


@dataclass
class MotoServer:
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    # The key boto3 uses as the bucket's owner: any key until IAM is enforced, then one with
    # every right (enforce_iam).
    owner: tuple[str, str] = (ACCESS_KEY, SECRET_KEY)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port, self.proc, timeout=60)
        # Listening is not answering yet: poll until an S3 request gets an S3 reply.
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(self.endpoint + "/", timeout=5) as reply:
                    if b"ListAllMyBucketsResult" in reply.read():
                        return
            except (urllib.error.URLError, OSError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"moto_server did not answer; see {self.log}")
            time.sleep(0.05)  # polling interval; the reply decides readiness

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def client(self, service: str = "s3") -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=self.owner[0],
            aws_secret_access_key=self.owner[1],
        )

    def iam_key(self, user: str, policy: dict[str, Any]) -> tuple[str, str]:
        """An IAM user with `policy` as its only policy, and an access key of its own."""
        iam = self.client("iam")
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName=user, PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    def enforce_iam(self) -> None:
        """From now on every request is checked against its key's IAM policies, as AWS does
        (moto checks none by default); the owner becomes an IAM user allowed everything."""
        self.owner = self.iam_key(
            "owner",
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
            },
        )
        request = urllib.request.Request(
            self.endpoint + "/moto-api/reset-auth",
            data=b"0",  # how many more requests go unchecked
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert json.load(reply)["status"] == "ok"

    def make_bucket(
        self, name: str, *, versioned: bool = False, lock_days: int | None = None
    ) -> None:
        """A bucket as its owner makes it: plain, versioned, or with Object Lock in compliance
        mode and a default retention of `lock_days` (which turns versioning on too)."""
        s3 = self.client()
        if lock_days is None:
            s3.create_bucket(Bucket=name)
            if versioned:
                s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
            return
        s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
        s3.put_object_lock_configuration(
            Bucket=name,
            ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": lock_days}},
            },
        )

    def versions(self, bucket: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(every object version, every delete marker) in the bucket."""
        s3 = self.client()
        versions: list[dict[str, Any]] = []
        markers: list[dict[str, Any]] = []
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            versions += page.get("Versions", [])
            markers += page.get("DeleteMarkers", [])
        return versions, markers

    def config_text(self, bucket: str, key: tuple[str, str] = (ACCESS_KEY, SECRET_KEY)) -> str:
        """A [replica] table for bluegrass-cloud.toml pointing at `bucket` on this server."""
        return (
            "\n[replica]\n"
            f'endpoint = "{self.endpoint}"\n'
            f'bucket = "{bucket}"\n'
            f'region = "{REGION}"\n'
            f'access_key_id = "{key[0]}"\n'
            f'secret_access_key = "{key[1]}"\n'
        )


@contextmanager
def running_moto(folder: Path) -> Iterator[MotoServer]:
    """A moto server for the block (its log in `folder`), stopped after it."""
    server = MotoServer(free_port(), folder / "moto.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()
