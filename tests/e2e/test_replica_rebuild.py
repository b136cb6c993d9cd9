"""A cloud lost and rebuilt from its replica, and a laptop enrolled before the loss that syncs
on as if nothing had happened (issue 14: "the users are back, the host key is the same, and an
enrolled laptop syncs again without re-enrolling").

Everything is real and one story, module-scoped: `rclone serve s3` on loopback; `bluegrass-cloud
run` with `[replica]` (tests.cloud.web.configured, free ports); a laptop (`bluegrass`, its own
HOME) enrolled with the code `user add` printed, syncing two folders over the sync endpoint
and the pinned device port. The cloud commits twice, `replicate`s, is stopped, and its data
root is wiped down to what docs/replica.md says to keep (the configuration and
`replica/admin.json`); `rebuild --from-replica`, then `run` again on the same ports. The laptop
is never enrolled again and none of its files is touched by the test.

A rebuilt live tree is the last snapshot, without the sync's check file, and marked as rebuilt
(decision 161): the laptop's first sync of each segment after the rebuild is one resync, which
deletes nothing and keeps the newer copy; the syncs after it are ordinary bisyncs.

Segment `docs` is the promise as stated: everything the laptop had synced was committed and
replicated before the loss. Segment `late` is the day the loss really happens on: the laptop
synced a new file and an edit after the last replicate, so the rebuilt cloud holds older
versions than the laptop's bisync remembers having seen there.
"""

from __future__ import annotations

import json
import os
import ssl
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cloud.server import Server
from tests.cloud.test_replica import wipe_but_config
from tests.cloud.web import Run, cli, configured, started
from tests.e2e.test_laptops_and_cloud import tree
from tests.e2e.test_unchanged import aged_past_racy_window
from tests.laptop.conftest import Laptop
from tests.support import tls
from tests.support.net import free_port
from tests.support.s3 import S3Server

pytestmark = pytest.mark.slow

USER = "alice"
DOCS, LATE = "docs", "late"
SEGMENTS = [f"{USER}/{DOCS}", f"{USER}/{LATE}"]
CHECK = ".bluegrass-check"


def sync(laptop: Laptop, segment: str) -> dict:
    """`bluegrass sync SEGMENT --json`'s result, whatever its outcome."""
    proc = laptop.run("sync", segment, "--json", check=False)
    assert proc.stdout.strip(), proc.stderr
    [result] = json.loads(proc.stdout)["segments"]
    return result


def synced(laptop: Laptop, segment: str) -> dict:
    result = sync(laptop, segment)
    assert result["outcome"] == "ok", result
    return result


def served_pin(port: int, where: Path) -> str:
    """The pin of the key the device port serves, computed by openssl (not our code)."""
    where.write_text(ssl.get_server_certificate(("127.0.0.1", port)))
    return tls.openssl_pin(where)


def aged(path: Path, seconds_ago: float) -> None:
    when = time.time() - seconds_ago
    os.utime(path, (when, when))


def accounts(users: list[dict]) -> list[dict]:
    """The accounts but their measured use: a history rebuilt from bundles is packed
    otherwise, so its size on disk differs."""
    return [{k: v for k, v in u.items() if k != "used"} for u in users]


@dataclass
class World:
    base: Path
    s3: S3Server
    data: Path
    cloud: Run
    server: Server
    laptop: Laptop
    docs: Path
    late: Path
    before: dict  # what the test saw before the loss
    rebuilt: dict  # `rebuild --from-replica --json`
    kept: list[str]  # what the wipe left in the data root

    def live(self, segment: str) -> Path:
        return self.data / "files" / USER / segment

    def log(self, segment: str) -> list[dict]:
        return json.loads(self.cloud("log", USER, segment, "--json").stdout)["snapshots"]

    def commit(self, segment: str) -> str:
        args = ["commit", "--user", USER, "--segment", segment, "--json"]
        out = json.loads(self.cloud(*args).stdout)
        [result] = out["segments"]
        assert result["committed"], result
        return str(result["commit"])


def laptop_files(laptop: Laptop) -> dict[str, bytes]:
    """The laptop's enrollment and sync state that a re-enrollment would rewrite."""
    return {
        p.name: p.read_bytes()
        for p in (laptop.config_dir / "bluegrass.toml", laptop.config_dir / "rclone.conf")
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("replica-laptop")
    s3 = S3Server(base / "s3", free_port())
    s3.start()
    server: Server | None = None
    try:
        data = base / "data"
        cloud = cli(data)
        cloud("init")
        server = configured(data, base, s3.config_text())  # the ports first: codes carry them
        code = json.loads(cloud("user", "add", USER, "--json").stdout)["enrollment_code"]
        for segment in (DOCS, LATE):
            (data / "files" / USER / segment).mkdir()
        cloud("commit")  # the empty segments: the scheduler's first round finds nothing to do
        started(server, SEGMENTS)
        server.wait_log("replicate: ")  # run's own replicate at start, before ours

        laptop = Laptop(base / "laptop")
        docs, late = laptop.folder("Documents"), laptop.folder("Late")
        laptop.run("enroll", code)
        laptop.run("segment", "add", DOCS, str(docs))
        laptop.run("segment", "add", LATE, str(late))
        world = World(base, s3, data, cloud, server, laptop, docs, late, {}, {}, [])

        # Two days of docs, each synced and committed.
        (docs / "notes.txt").write_text("first draft\n")
        (docs / "sub" / "deeper").mkdir(parents=True)
        (docs / "sub" / "deeper" / "data.bin").write_bytes(bytes(range(256)) * 64)
        (docs / "shared.txt").write_text("the cloud will change this\n")
        aged(docs / "shared.txt", 3600)
        assert synced(laptop, DOCS)["resync"] is True
        day1 = world.commit(DOCS)
        (docs / "notes.txt").write_text("second draft, longer than the first\n")
        assert synced(laptop, DOCS)["files_transferred"] == 1
        day2 = world.commit(DOCS)

        for n in range(6):
            (late / f"kept-{n}.txt").write_text(f"file {n}, as of the last replicate\n")
            aged(late / f"kept-{n}.txt", 7200)
        (late / "edited.txt").write_text("as of the last replicate\n")
        aged(late / "edited.txt", 7200)
        synced(laptop, LATE)
        late_day = world.commit(LATE)

        # The pinned device port answers: a quiet sync is remembered and the next is skipped.
        aged_past_racy_window(docs, world.live(DOCS))
        synced(laptop, DOCS)
        assert synced(laptop, DOCS)["bisync"] is False

        replicated = json.loads(cloud("replicate", "--json").stdout)
        assert replicated["errors"] == [], replicated

        # After the last replicate, the laptop goes on working: a new file and an edit reach
        # the cloud's live tree, not yet its history, nor the replica.
        (late / "written-after.txt").write_text("written after the last replicate\n")
        (late / "edited.txt").write_text("edited after the last replicate, the newest\n")
        assert synced(laptop, LATE)["files_transferred"] == 2
        assert (world.live(LATE) / "written-after.txt").is_file()

        world.before = {
            "host_key": (data / "ssh_host_ed25519_key.pub").read_text(),
            "pin": served_pin(server.device_port, base / "served-before.pem"),
            "users": json.loads(cloud("user", "list", "--json").stdout)["users"],
            "devices": json.loads(cloud("device", "list", USER, "--json").stdout)["devices"],
            "commits": {DOCS: [day1, day2], LATE: [late_day]},
            "log": world.log(DOCS),
            "laptop": laptop_files(laptop),
            "docs": tree(docs),
            "late": tree(late),
            "ports": (server.sftp_port, server.http_port, server.device_port),
        }

        # The loss: the server stops, and of its data root only what docs/replica.md says to
        # keep is left.
        assert server.stop() == 0
        wipe_but_config(data)
        world.kept = sorted(p.relative_to(data).as_posix() for p in data.rglob("*"))
        world.rebuilt = json.loads(cloud("rebuild", "--from-replica", "--json").stdout)
        cloud("verify")
        # The same Server: the same three ports. The scheduler's record of today's commits
        # came back with the database, so its first round has nothing to do and says nothing;
        # run's replicate at start is what is waited for.
        server.start()
        server.wait_log("replicate: ", timeout=60)
        yield world
    finally:
        if server is not None and server.proc is not None:
            server.stop()
        s3.stop()


def test_only_the_configuration_and_the_administrator_secret_were_kept(world: World) -> None:
    assert world.kept == ["bluegrass-cloud.toml", "replica", "replica/admin.json"]
    assert world.rebuilt["users"] == [USER]
    assert {s["segment"] for s in world.rebuilt["segments"]} == {DOCS, LATE}
    # Each rebuilt live tree says so to the devices, beside their sidecars.
    for segment in (DOCS, LATE):
        assert (world.live(segment) / ".bluegrass-meta" / "rebuilt").is_file()


def test_the_server_is_the_same_to_the_laptop(world: World) -> None:
    """Same ports, same host key, same TLS key, same accounts and device secrets."""
    assert (world.data / "ssh_host_ed25519_key.pub").read_text() == world.before["host_key"]
    served = served_pin(world.server.device_port, world.base / "served-after.pem")
    assert served == world.before["pin"]
    settings = tomllib.loads((world.laptop.config_dir / "bluegrass.toml").read_text())
    assert settings["server"]["tls_pin"] == world.before["pin"]
    users = json.loads(world.cloud("user", "list", "--json").stdout)["users"]
    assert accounts(users) == accounts(world.before["users"])
    devices = json.loads(world.cloud("device", "list", USER, "--json").stdout)["devices"]
    assert devices == world.before["devices"]


def test_the_laptop_syncs_both_ways_without_enrolling_again(world: World) -> None:
    laptop, docs, live = world.laptop, world.docs, world.live(DOCS)
    assert tree(docs) == world.before["docs"]  # untouched by the loss
    # The rebuilt live tree is what was committed: the laptop's files, without the sync's
    # check file (snapshots never hold it), which tells the laptop the folder is new.
    assert tree(live) == {k: v for k, v in world.before["docs"].items() if k != CHECK}
    (docs / "after-the-rebuild.txt").write_text("written on the laptop after the rebuild\n")
    # A file changed in the cloud's live tree (a restore from the web interface would do it).
    (live / "shared.txt").write_text("changed on the cloud side after the rebuild\n")
    first = synced(laptop, DOCS)
    assert first["resync"] is True and first["deletes"] == 0, first
    assert any("made anew" in note for note in first["notes"]), first
    assert first["files_transferred"] == 2, first
    assert (live / "after-the-rebuild.txt").read_text() == (
        "written on the laptop after the rebuild\n"
    )
    assert (docs / "shared.txt").read_text() == "changed on the cloud side after the rebuild\n"
    assert tree(docs) == tree(live)

    # From then on, ordinary syncs: an edit on each side, each carried to the other.
    (docs / "notes.txt").write_text("third draft, after the rebuild, on the laptop\n")
    (live / "sub" / "from-the-cloud.txt").write_text("new on the cloud side\n")
    then = synced(laptop, DOCS)
    assert then["resync"] is False and then["files_transferred"] == 2, then
    assert (live / "notes.txt").read_text() == "third draft, after the rebuild, on the laptop\n"
    assert (docs / "sub" / "from-the-cloud.txt").read_text() == "new on the cloud side\n"
    assert tree(docs) == tree(live)

    # The pinned device port answers with the same key: a quiet sync is remembered again and
    # the next is skipped (without the cloud's state over that port, bisync runs every time).
    aged_past_racy_window(docs, live)
    synced(laptop, DOCS)
    assert synced(laptop, DOCS)["bisync"] is False
    assert laptop_files(laptop) == world.before["laptop"]


def test_the_laptop_status_shows_nothing_wrong(world: World) -> None:
    synced(world.laptop, DOCS)
    status = world.laptop.status()
    assert status["enrolled"] is True
    docs = next(s for s in status["segments"] if s["segment"] == DOCS)
    assert docs["last_run"]["outcome"] == "ok", docs
    assert docs["last_run"]["action"] in (None, ""), docs
    assert docs["needs_attention"] is False and docs["warnings"] == [], docs
    text = world.laptop.run("status").stdout
    for word in ("host key", "pinned", "TLS", "enroll "):
        assert word not in text, text


def test_the_history_has_the_snapshots_from_before_the_loss(world: World) -> None:
    after = world.commit(DOCS)
    commits = [s["commit"] for s in world.log(DOCS)]
    assert commits[0] == after
    # Every snapshot from before the loss (the first, of the empty folder, included).
    assert set(world.before["commits"][DOCS]) <= set(commits[1:])
    assert len(commits) == len(world.before["log"]) + 1
    old = world.base / "restored-day1"
    first = world.before["commits"][DOCS][0]
    world.cloud("restore", USER, DOCS, "--at", first, "--to", str(old))
    assert (old / "notes.txt").read_text() == "first draft\n"


def test_what_the_laptop_synced_after_the_last_replicate_is_not_lost(world: World) -> None:
    """The rebuilt cloud holds the late segment as of the last replicate; the laptop holds
    newer files that its bisync remembers having put on the cloud. Its next sync must not take
    the cloud's older state for changes made there: the newer files stay, and go up again."""
    laptop, late, live = world.laptop, world.late, world.live(LATE)
    assert tree(late) == world.before["late"]
    assert not (live / "written-after.txt").exists()  # the loss, as expected
    first = sync(laptop, LATE)
    assert first["outcome"] == "ok" and first["deletes"] == 0, first
    assert first["resync"] is True, first
    assert synced(laptop, LATE)["files_transferred"] == 0
    assert (late / "written-after.txt").read_text() == "written after the last replicate\n"
    assert (late / "edited.txt").read_text() == "edited after the last replicate, the newest\n"
    assert tree(late) == world.before["late"]
    assert tree(live) == world.before["late"]
