"""The whole system on one machine: the real cloud role and two laptops, as separate processes.

- the cloud: `bluegrass-cloud run` (tests.cloud.server.Server) on 127.0.0.1, free ports, with
  its own data root; alice is a user with two devices, one enrollment code for each laptop;
- two laptops (tests.laptop.conftest.Laptop): separate HOME, XDG_CONFIG_HOME and
  XDG_STATE_HOME, each running the real `bluegrass` command, each enrolled with its own device
  code and syncing its own folder as the segment `docs`.

Everything is module-scoped: one cloud and two laptops carry a whole story from step to step.

The cloud's scheduler commits a segment it has never committed as soon as it sees it (its last
`commit_at` is overdue). So that it never commits in the middle of the story, the segment's
(empty) live tree is committed before `run` starts, `commit_at` is put 12 hours away, and the
scheduler's first round is waited for (tests.cloud.web.configured and started). From then on
every snapshot is one the tests take.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.cloud.server import Server, enrolled
from tests.cloud.web import Run, cli, configured, started
from tests.laptop.conftest import Laptop

USER = "alice"
SEGMENT = "docs"


@dataclass
class Cloud:
    data: Path
    cli: Run
    server: Server
    first_device: str  # `user add --json`'s output: alice's first device and its code

    @property
    def tree(self) -> Path:
        """The segment's live tree, DATA/files/alice/docs/ (tests only read it)."""
        return self.data / "files" / USER / SEGMENT

    def commit(self) -> dict[str, Any]:
        out = json.loads(self.cli("commit", "--user", USER, "--segment", SEGMENT, "--json").stdout)
        assert out["errors"] == [], out
        [result] = out["segments"]
        return result

    def log(self) -> list[dict[str, Any]]:
        return json.loads(self.cli("log", USER, SEGMENT, "--json").stdout)["snapshots"]

    def restore(self, to: Path, *, at: str, path: str | None = None) -> dict[str, Any]:
        where = [path] if path else []
        args = ["restore", USER, SEGMENT, *where, "--at", at, "--to", str(to), "--json"]
        return json.loads(self.cli(*args).stdout)


@dataclass
class Laptops:
    a: Laptop
    b: Laptop
    docs_a: Path
    docs_b: Path
    devices: tuple[str, str]


@pytest.fixture(scope="module")
def e2e_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="module")
def cloud(e2e_tmp: Path) -> Iterator[Cloud]:
    data = e2e_tmp / "data"
    run = cli(data)
    run("init")
    server = configured(data, e2e_tmp)  # the ports first: enrollment codes carry them
    first_device = run("user", "add", USER, "--json").stdout
    (data / "files" / USER / SEGMENT).mkdir()
    run("commit")  # the empty segment: the scheduler's first round then finds nothing to do
    try:
        started(server, [f"{USER}/{SEGMENT}"])
        yield Cloud(data, run, server, first_device)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def laptops(cloud: Cloud, e2e_tmp: Path) -> Laptops:
    a, b = Laptop(e2e_tmp / "laptop-a"), Laptop(e2e_tmp / "laptop-b")
    docs_a, docs_b = a.folder("Documents"), b.folder("Sync/docs")
    # A gets the code `user add` printed, B one from `device add`: two devices of alice's.
    outputs = [cloud.first_device, cloud.cli("device", "add", USER, "--json").stdout]
    devices = []
    for laptop, folder, out in ((a, docs_a, outputs[0]), (b, docs_b, outputs[1])):
        device = enrolled(out)  # decodes the code: alice, a device of her own
        assert (device.user, device.code.sftp_port) == (USER, cloud.server.sftp_port)
        devices.append(device.device)
        laptop.run("enroll", json.loads(out)["enrollment_code"])
        laptop.run("segment", "add", SEGMENT, str(folder))
    assert devices[0] != devices[1]
    return Laptops(a, b, docs_a, docs_b, (devices[0], devices[1]))
