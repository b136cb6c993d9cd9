"""`replica check`, `rebuild` and `replicate` against a real `rclone serve s3` on loopback,
on damage and on histories that change: a truncated or altered object in the bucket is named
and makes the check fail, a rebuild falls back to the newest whole state and says so, and the
next replicate heals the chain; a full bundle comes again after `full_every` incremental ones;
a rewritten history is refused, not replicated over what the bucket holds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.cloud.test_replica import rclone_with
from tests.core.conftest import git_env
from tests.support.replica import SEGMENT, USER, ReplicaSite, as_json, replica_site, runner


@dataclass
class Site(ReplicaSite):
    heads: list[str] = field(default_factory=list)

    def raw_path(self, plain: str) -> Path:
        """Where the bucket keeps alice's object `plain` (found with rclone and her keys)."""
        secret = json.loads((self.data / "replica" / "keys" / f"{USER}.json").read_text())
        area = self.s3.bucket_dir / secret["prefix"]
        out = rclone_with(secret, area, "lsjson", "-R", "--files-only", "--encrypted", "c:")
        assert out.returncode == 0, out.stderr
        for item in json.loads(out.stdout):
            if item["Path"] == plain:
                return area / item["EncryptedPath"]
        raise AssertionError(f"{plain} is not in the bucket")

    def rebuild_fresh(self, name: str):
        fresh = self.base / name
        (fresh / "replica").mkdir(parents=True, mode=0o700)
        shutil.copy(self.data / "bluegrass-cloud.toml", fresh)
        shutil.copy(self.data / "replica" / "admin.json", fresh / "replica")
        return runner(fresh)("rebuild", "--from-replica", "--json", check=False)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """Two days of alice's history, each replicated."""
    with replica_site(tmp_path, Site) as site:
        for day in range(2):
            (site.live / f"day-{day}.bin").write_bytes(os.urandom(300_000))
            out = as_json(site.cloud("commit", "--json"))
            site.heads.append(out["segments"][0]["commit"])
            site.cloud("replicate")
        yield site


def test_a_sound_replica_checks_out(site: Site) -> None:
    out = as_json(site.cloud("replica", "check", "--json"))
    alice = next(a for a in out["areas"] if a["area"] == USER)
    assert out["ok"] and alice["manifest"] == "manifests/000002.json" and alice["problems"] == []


def test_a_truncated_bundle_is_named_and_the_rebuild_falls_back(site: Site) -> None:
    raw = site.raw_path(f"{SEGMENT}/000002-inc.bundle")
    # Cut at a crypt block boundary: crypt itself would not notice (research report, B).
    with raw.open("r+b") as handle:
        handle.truncate(32 + 65536 + 16)
    proc = site.cloud("replica", "check", "--json", check=False)
    assert proc.returncode == 1
    alice = next(a for a in json.loads(proc.stdout)["areas"] if a["area"] == USER)
    assert alice["manifest"] == "manifests/000001.json"
    assert alice["problems"] == [
        "manifests/000002.json names objects missing or of another size: "
        f"{SEGMENT}/000002-inc.bundle"
    ]

    rebuilt = site.rebuild_fresh("fresh")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert json.loads(rebuilt.stdout)["segments"][0]["head"] == site.heads[0]
    assert "warning: alice: manifests/000002.json names objects missing" in rebuilt.stderr

    # The next replicate builds on the whole state and writes new names only.
    out = as_json(site.cloud("replicate", "--json"))
    alice_run = next(a for a in out["areas"] if a["area"] == USER)
    assert alice_run["new_bundles"] == [f"{SEGMENT}/000003-inc.bundle"]
    assert alice_run["manifest"] == "manifests/000003.json"
    assert as_json(site.cloud("replica", "check", "--json"))["ok"]
    rebuilt = site.rebuild_fresh("fresh-again")
    assert json.loads(rebuilt.stdout)["segments"][0]["head"] == site.heads[1]


def test_an_altered_byte_is_found(site: Site) -> None:
    raw = site.raw_path(f"{SEGMENT}/000001-full.bundle")
    size = raw.stat().st_size
    with raw.open("r+b") as handle:
        handle.seek(size // 2)
        byte = handle.read(1)
        handle.seek(size // 2)
        handle.write(bytes([byte[0] ^ 0x01]))
    proc = site.cloud("replica", "check", "--json", check=False)
    assert proc.returncode == 1
    alice = next(a for a in json.loads(proc.stdout)["areas"] if a["area"] == USER)
    assert alice["problems"], alice
    assert any("000001-full.bundle" in p for p in alice["problems"]), alice["problems"]
    rebuilt = site.rebuild_fresh("fresh")
    assert rebuilt.returncode != 0
    assert "000001-full.bundle" in rebuilt.stderr
    assert not (site.base / "fresh" / ".bluegrass-data").exists()


def test_a_full_bundle_again_after_full_every(site: Site) -> None:
    config = site.data / "bluegrass-cloud.toml"
    config.write_text(site.s3.config_text(full_every=1))
    live = site.data / "files" / USER / SEGMENT
    names = []
    for day in range(2, 4):
        (live / f"day-{day}.bin").write_bytes(os.urandom(1000))
        site.cloud("commit")
        out = as_json(site.cloud("replicate", "--json"))
        names += next(a for a in out["areas"] if a["area"] == USER)["new_bundles"]
    # The fixture made 000001-full and 000002-inc; with full_every = 1, 3 is full, 4 is not.
    assert names == [f"{SEGMENT}/000003-full.bundle", f"{SEGMENT}/000004-inc.bundle"]
    head = as_json(site.cloud("log", USER, SEGMENT, "--json"))["snapshots"][0]["commit"]
    rebuilt = json.loads(site.rebuild_fresh("fresh").stdout)["segments"][0]
    assert (rebuilt["head"], rebuilt["bundles"]) == (head, 2)
    log = as_json(runner(site.base / "fresh")("log", USER, SEGMENT, "--json"))["snapshots"]
    assert len(log) == 4  # the whole history is in the full bundle, not only the last day


def test_a_rewritten_history_is_refused_and_the_replica_kept(site: Site) -> None:
    repo = site.data / "repos" / USER / f"{SEGMENT}.git"
    # Someone moves the branch back to the first snapshot (the second is then unreachable).
    subprocess.run(
        ["git", "--git-dir", str(repo), "update-ref", "refs/heads/main", site.heads[0]],
        check=True,
        env=git_env(),
    )
    proc = site.cloud("replicate", "--json", check=False)
    assert proc.returncode == 1
    assert "no longer contains" in proc.stderr and "history rewritten?" in proc.stderr
    out = json.loads(proc.stdout)
    assert [e["area"] for e in out["errors"]] == [USER]
    assert USER not in [a["area"] for a in out["areas"]]
    rebuilt = json.loads(site.rebuild_fresh("fresh").stdout)["segments"][0]
    assert rebuilt["head"] == site.heads[1]
