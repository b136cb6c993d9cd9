"""A real S3 server on loopback for tests: `rclone serve s3` over a folder (the pinned rclone).

Each top-level folder of the served directory is a bucket, so a test can read the bucket's raw
objects straight from disk. Keys must look like real ones: rclone 1.75.2's server refused the
two-letter pair AK,SK with InvalidAccessKeyId (measured), and accepts AWS-length keys.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from bluegrass.core import rclone

from tests.support.net import free_port, wait_for_port

ACCESS_KEY = "AKIABLUEGRASSTEST001"
SECRET_KEY = "bluegrassTestSecretKey0123456789abcdefgh"
BUCKET = "backups"


@dataclass
class S3Server:
    root: Path  # the served folder; root / BUCKET holds the bucket's raw objects
    port: int
    proc: subprocess.Popen[bytes] | None = None
    # More (access key, secret) pairs the server accepts, e.g. a recovery kit's own key.
    more_keys: tuple[tuple[str, str], ...] = ()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def bucket_dir(self) -> Path:
        return self.root / BUCKET

    def start(self) -> None:
        self.bucket_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RCLONE_")}
        self.proc = subprocess.Popen(
            [
                str(rclone.binary()),
                "serve",
                "s3",
                "--auth-key",
                f"{ACCESS_KEY},{SECRET_KEY}",
                *(arg for pair in self.more_keys for arg in ("--auth-key", ",".join(pair))),
                "--addr",
                f"127.0.0.1:{self.port}",
                "--config",
                "",
                str(self.root),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def config_text(self, **extra: object) -> str:
        """A [replica] table for bluegrass-cloud.toml pointing at this server."""
        values: dict[str, object] = {
            "endpoint": self.endpoint,
            "bucket": BUCKET,
            "access_key_id": ACCESS_KEY,
            "secret_access_key": SECRET_KEY,
            **extra,
        }
        lines = ["", "[replica]"]
        for key, value in values.items():
            if isinstance(value, bool):
                lines.append(f"{key} = {'true' if value else 'false'}")
            elif isinstance(value, int):
                lines.append(f"{key} = {value}")
            else:
                lines.append(f'{key} = "{value}"')
        return "\n".join(lines) + "\n"

    def raw_objects(self) -> dict[str, bytes]:
        """Every object in the bucket as stored: {name: bytes}."""
        return {
            p.relative_to(self.bucket_dir).as_posix(): p.read_bytes()
            for p in sorted(self.bucket_dir.rglob("*"))
            if p.is_file()
        }


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[S3Server]:
    server = S3Server(tmp_path / "s3", free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()
