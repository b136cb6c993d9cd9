"""moto's standalone S3 server on loopback for tests: versioning and Object Lock, which
`rclone serve s3` (tests/support/s3.py) does not have.

`moto_server` (from `moto[server]` in requirements-dev.txt) runs as a process of its own on a
free port, and the test waits for it by polling until it answers S3's ListBuckets. Its state
is in memory: a new server per test. Buckets are made through boto3 (installed with moto) as a
bucket's owner would make them; Bluegrass itself reaches the server only through rclone.
"""

from __future__ import annotations

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

    def client(self, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
        )

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

    def config_text(self, bucket: str) -> str:
        """A [replica] table for bluegrass-cloud.toml pointing at `bucket` on this server."""
        return (
            "\n[replica]\n"
            f'endpoint = "{self.endpoint}"\n'
            f'bucket = "{bucket}"\n'
            f'region = "{REGION}"\n'
            f'access_key_id = "{ACCESS_KEY}"\n'
            f'secret_access_key = "{SECRET_KEY}"\n'
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
