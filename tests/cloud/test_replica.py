"""The replica against a real S3 server (`rclone serve s3` on loopback): the store's torture
corpus replicated, the data root wiped down to its configuration and administrator secret,
rebuilt from the bucket, and every snapshot restored byte-exact; the bucket's raw objects
read from the served folder; one user's secrets tried on another's objects with rclone alone.

One module-wide world does the expensive part once (corpus, two snapshots, replicate,
rebuild); each test checks one promise against it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.cloud.conftest import Run, one_line_error
from tests.conftest import VENV_BIN
from tests.core.conftest import Print, assert_same_tree, fingerprint
from tests.core.test_store_corpus import build_corpus
from tests.support.net import free_port
from tests.support.replica import as_json, runner
from tests.support.s3 import ACCESS_KEY, SECRET_KEY, S3Server

ALICE, BERT = "alice", "bertrand"
DOCS, NOTES = "documents", "notebook"
BERT_NOTE = b"bertrand's private note: the combination is 31-41-59\n"
CRYPT_MAGIC = b"RCLONE\x00\x00"
TLS_KEY, TLS_CERT = "tls_device_key.pem", "tls_device_cert.pem"


def days_ago(n: int) -> str:
    return (datetime.now().astimezone() - timedelta(days=n)).isoformat()


def expected_tree(root: Path, skipped: dict[str, str]) -> dict[bytes, Print]:
    found = fingerprint(root)
    for path in skipped:
        found.pop(os.fsencode(path), None)
    return found


def wipe_but_config(data: Path) -> None:
    """Everything in the data root but the configuration and the administrator's secret."""
    for entry in data.iterdir():
        if entry.name == "bluegrass-cloud.toml":
            continue
        if entry.name == "replica":
            for inner in entry.iterdir():
                if inner.name != "admin.json":
                    shutil.rmtree(inner) if inner.is_dir() else inner.unlink()
            continue
        if entry.is_dir() and not entry.is_symlink():
            for path in entry.rglob("*"):  # the corpus has folders without any permission
                if path.is_dir() and not path.is_symlink():
                    path.chmod(0o700)
            shutil.rmtree(entry)
        else:
            entry.unlink()


def rclone_with(secret: dict[str, str], remote: Path, *args: str, names: bool = True):
    """rclone alone (no Bluegrass code) through a crypt remote over `remote` made from one
    user's secrets file, as docs/replica.md tells a person to do it."""
    rclone = str(VENV_BIN / "rclone")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RCLONE_")}

    def obscure(value: str) -> str:
        return subprocess.run(
            [rclone, "obscure", "-"],
            input=value,
            capture_output=True,
            text=True,
            check=True,
            env=clean,
        ).stdout.strip()

    env = {
        **clean,
        "RCLONE_CONFIG_C_TYPE": "crypt",
        "RCLONE_CONFIG_C_REMOTE": str(remote),
        "RCLONE_CONFIG_C_PASSWORD": obscure(secret["password"]),
        "RCLONE_CONFIG_C_PASSWORD2": obscure(secret["password2"]),
        "RCLONE_CONFIG_C_FILENAME_ENCRYPTION": "standard" if names else "off",
        "RCLONE_CONFIG_C_DIRECTORY_NAME_ENCRYPTION": "true",
        "RCLONE_CONFIG_C_FILENAME_ENCODING": "base64",
    }
    return subprocess.run(
        [rclone, *args, "--config", ""], capture_output=True, env=env, check=False
    )


@dataclass
class World:
    base: Path
    s3: S3Server
    data: Path
    cloud: Run
    expected: dict[str, dict[bytes, Print]]  # commit -> the live tree when it was taken
    skipped: dict[str, str]
    first: dict
    again: dict
    raw: dict[str, bytes]
    secrets: dict[str, dict[str, str]]
    host_key: str
    users: list
    devices: list
    bert_commit: str
    rebuilt: dict
    chunks: list[bytes]  # pieces of the corpus's random files


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("replica")
    s3 = S3Server(base / "s3", free_port())
    s3.start()
    try:
        data = base / "data"
        cloud = runner(data)
        cloud("init")
        cloud("user", "add", ALICE)
        cloud("user", "add", BERT)
        live = data / "files" / ALICE / DOCS
        live.mkdir()
        skipped = build_corpus(live, base)
        live.chmod(0o750)
        expected: dict[str, dict[bytes, Print]] = {}
        before = expected_tree(live, skipped)
        out = as_json(cloud("commit", "--user", ALICE, "--date", days_ago(3), "--json"))
        expected[out["segments"][0]["commit"]] = before
        # A second day: changed, deleted, added, an empty folder; the parent times move.
        (live / "data" / "random-1.bin").write_bytes(b"changed on day two\n")
        (live / "data" / "random-0.bin").unlink()
        (live / "later" / "empty").mkdir(parents=True)
        (live / "later" / "added.txt").write_bytes(b"added on day two\n")
        before = expected_tree(live, skipped)
        out = as_json(cloud("commit", "--user", ALICE, "--date", days_ago(2), "--json"))
        expected[out["segments"][0]["commit"]] = before
        notes = data / "files" / BERT / NOTES
        notes.mkdir()
        (notes / "combination.txt").write_bytes(BERT_NOTE)
        bert = as_json(cloud("commit", "--user", BERT, "--json"))["segments"][0]["commit"]

        # The device port's TLS pair (another branch makes it): replicated where present.
        (data / TLS_KEY).write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot a real key\n")
        (data / TLS_KEY).chmod(0o600)
        (data / TLS_CERT).write_bytes(b"-----BEGIN CERTIFICATE-----\nnot a real one\n")
        (data / "bluegrass-cloud.toml").write_text(s3.config_text())
        first = as_json(cloud("replicate", "--json"))
        again = as_json(cloud("replicate", "--json"))
        raw = s3.raw_objects()
        secrets = {
            user: json.loads((data / "replica" / "keys" / f"{user}.json").read_text())
            for user in (ALICE, BERT)
        }
        host_key = (data / "ssh_host_ed25519_key.pub").read_text()
        users = as_json(cloud("user", "list", "--json"))["users"]
        devices = as_json(cloud("device", "list", ALICE, "--json"))["devices"]

        blob = (live / "data" / "random-1000003.bin").read_bytes()
        chunks = [
            blob[500_000:500_064],
            blob[:64],
            (live / "data" / "random-4097.bin").read_bytes()[:64],
        ]
        wipe_but_config(data)
        rebuilt = as_json(cloud("rebuild", "--from-replica", "--json"))
        yield World(
            base,
            s3,
            data,
            cloud,
            expected,
            skipped,
            first,
            again,
            raw,
            secrets,
            host_key,
            users,
            devices,
            bert,
            rebuilt,
            chunks,
        )
    finally:
        s3.stop()


def test_first_replicate_uploads_every_history_and_the_server_state(world: World) -> None:
    areas = {a["area"]: a for a in world.first["areas"]}
    assert world.first["errors"] == []
    assert set(areas) == {"server", ALICE, BERT}
    assert areas[ALICE]["new_bundles"] == [f"{DOCS}/000001-full.bundle"]
    assert areas[BERT]["new_bundles"] == [f"{NOTES}/000001-full.bundle"]
    assert all(a["manifest"] == "manifests/000001.json" for a in areas.values())
    # The administrator's secret is announced the one time it is made.
    assert world.first["admin_secret_created"].endswith("replica/admin.json")


def test_a_replicate_with_nothing_new_uploads_nothing(world: World) -> None:
    assert all(a["nothing_new"] and a["uploaded"] == 0 for a in world.again["areas"])
    assert world.again["admin_secret_created"] is None


def test_rebuild_brings_back_every_user_and_history(world: World) -> None:
    assert world.rebuilt["users"] == [ALICE, BERT]
    got = {(s["user"], s["segment"]) for s in world.rebuilt["segments"]}
    assert got == {(ALICE, DOCS), (BERT, NOTES)}
    assert world.cloud("verify").returncode == 0

    # Everything but the measured use: a history rebuilt from bundles is packed otherwise, so
    # its size on disk differs (the histories themselves are compared commit by commit below).
    def accounts(users: list[dict[str, object]]) -> list[dict[str, object]]:
        return [{k: v for k, v in u.items() if k != "used"} for u in users]

    rebuilt_users = as_json(world.cloud("user", "list", "--json"))["users"]
    assert accounts(rebuilt_users) == accounts(world.users)
    # Devices keep their ids and secrets: the accounts database is the one replicated.
    assert as_json(world.cloud("device", "list", ALICE, "--json"))["devices"] == world.devices


def test_the_host_key_and_the_tls_key_are_the_same(world: World) -> None:
    assert (world.data / "ssh_host_ed25519_key.pub").read_text() == world.host_key
    assert (world.data / "ssh_host_ed25519_key").stat().st_mode & 0o077 == 0
    assert (world.data / TLS_KEY).read_bytes().endswith(b"not a real key\n")
    assert (world.data / TLS_KEY).stat().st_mode & 0o077 == 0
    assert (world.data / TLS_CERT).read_bytes().endswith(b"not a real one\n")


def test_every_snapshot_restores_byte_exact_after_the_rebuild(world: World) -> None:
    log = as_json(world.cloud("log", ALICE, DOCS, "--json"))["snapshots"]
    assert sorted(s["commit"] for s in log) == sorted(world.expected)
    for n, (commit, expected) in enumerate(world.expected.items()):
        target = world.base / f"restored-{n}"
        world.cloud("restore", ALICE, DOCS, "--at", commit, "--to", str(target))
        assert_same_tree(expected, fingerprint(target))
    target = world.base / "restored-bert"
    world.cloud("restore", BERT, NOTES, "--at", world.bert_commit, "--to", str(target))
    assert (target / "combination.txt").read_bytes() == BERT_NOTE


def test_the_live_trees_are_back(world: World) -> None:
    live = world.data / "files" / ALICE / DOCS
    assert (live / "later" / "added.txt").read_bytes() == b"added on day two\n"
    assert not (live / "data" / "random-0.bin").exists()
    assert (world.data / "files" / BERT / NOTES / "combination.txt").read_bytes() == BERT_NOTE


def test_replicate_after_the_rebuild_sends_no_history_again(world: World) -> None:
    out = as_json(world.cloud("replicate", "--json"))
    areas = {a["area"]: a for a in out["areas"]}
    assert out["errors"] == []
    for user in (ALICE, BERT):
        assert areas[user]["nothing_new"] and areas[user]["uploaded"] == 0, areas[user]
    # The rebuild left the record of what the bucket holds: the secret is not new.
    assert out["admin_secret_created"] is None


def test_raw_objects_hold_no_names_and_no_contents(world: World) -> None:
    """What the provider stores: crypt's header on every object, names that say nothing."""
    contents = [BERT_NOTE[:40], b"added on day two", b"hello from a nested repository"]
    contents += world.chunks
    names = [
        ALICE.encode(),
        BERT.encode(),
        DOCS.encode(),
        NOTES.encode(),
        b"random-4096",
        b"combination",
        b"refs/heads",
        b"bundle",
        b"manifest",
    ]
    assert world.raw
    for key, body in world.raw.items():
        assert body.startswith(CRYPT_MAGIC), key
        for needle in names:
            assert needle.decode() not in key, (key, needle)
        for needle in names + contents:
            assert needle not in body, (key, needle)


def test_user_b_secrets_cannot_open_user_a_objects(world: World, tmp_path: Path) -> None:
    a, b = world.secrets[ALICE], world.secrets[BERT]
    area = world.s3.bucket_dir / a["prefix"]
    # With alice's own secrets and rclone alone, her objects have names and contents back.
    own = rclone_with(a, area, "lsf", "-R", "--files-only", "c:")
    assert own.returncode == 0, own.stderr
    assert f"{DOCS}/000001-full.bundle" in own.stdout.decode().splitlines()
    # With bertrand's, not one name decrypts.
    other = rclone_with(b, area, "lsf", "-R", "--files-only", "c:")
    assert other.stdout.decode().split() == []
    # Nor does a content: the same raw object, read as a crypt file without name encryption.
    raw_name = next(k for k in world.raw if k.startswith(a["prefix"] + "/"))
    one = tmp_path / "one"
    one.mkdir()
    (one / "x.bin").write_bytes(world.raw[raw_name])
    assert rclone_with(a, one, "cat", "c:x", names=False).returncode == 0
    refused = rclone_with(b, one, "cat", "c:x", names=False)
    assert refused.returncode != 0 and refused.stdout == b""
    assert b"authenticate" in refused.stderr, refused.stderr


def test_a_bundle_decrypted_with_rclone_alone_is_a_git_bundle(world: World, tmp_path: Path) -> None:
    a = world.secrets[ALICE]
    dest = tmp_path / "plain"
    got = rclone_with(a, world.s3.bucket_dir / a["prefix"], "copy", "c:", str(dest))
    assert got.returncode == 0, got.stderr
    bundle = dest / DOCS / "000001-full.bundle"
    assert bundle.read_bytes().startswith(b"# v2 git bundle\n")
    clone = tmp_path / "clone.git"
    cloned = subprocess.run(
        ["git", "clone", "--quiet", "--bare", str(bundle), str(clone)],
        capture_output=True,
        check=False,
    )
    assert cloned.returncode == 0, cloned.stderr


def test_replica_check_passes_and_says_how_old(world: World) -> None:
    out = as_json(world.cloud("replica", "check", "--json"))
    assert out["ok"] is True, out
    assert {a["area"] for a in out["areas"]} == {"server", ALICE, BERT}
    assert 0 <= out["newest_age_hours"] < 1
    # rclone serve s3 lets any key delete and keeps no versions (it cannot even list them;
    # the probe asks the bucket's versioning instead): the check says so.
    assert out["protected"] is False and "Object Lock" in out["probe"]
    assert out["protection"] == "none"


def test_rebuild_refuses_a_data_root_that_is_not_empty(world: World) -> None:
    line = one_line_error(world.cloud("rebuild", "--from-replica", check=False))
    assert "is not empty" in line


def test_rebuild_without_the_administrator_secret_says_what_to_copy(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "bluegrass-cloud.toml").write_text(
        '[replica]\nendpoint = "http://127.0.0.1:9"\nbucket = "backups"\n'
        'access_key_id = "AKIAEXAMPLE000000001"\nsecret_access_key = "x0123456789"\n'
    )
    line = one_line_error(runner(data)("rebuild", "--from-replica", check=False))
    assert "no administrator secret" in line and "admin.json" in line
    assert sorted(p.name for p in data.iterdir()) == ["bluegrass-cloud.toml"]


def test_secrets_are_obscured_as_rclone_reveals_them() -> None:
    """The replica obscures the crypt passwords itself (no `rclone obscure` per secret):
    rclone must read back exactly the secret, whatever its characters."""
    from bluegrass.cloud.replica.remote import obscure

    clean = {k: v for k, v in os.environ.items() if not k.startswith("RCLONE_")}
    for secret in ["0" * 64, "b4f1" * 16, "pässwörd with spaces", "x"]:
        shown = obscure(secret)
        assert shown != obscure(secret)  # a fresh IV each time, as rclone's own
        revealed = subprocess.run(
            [str(VENV_BIN / "rclone"), "reveal", shown],
            capture_output=True,
            text=True,
            env=clean,
            check=True,
        ).stdout
        assert revealed.rstrip("\n") == secret


def test_an_unreachable_bucket_is_one_line_and_the_secret_is_said_again(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cloud = runner(data)
    cloud("init")
    cloud("user", "add", ALICE)
    closed = S3Server(tmp_path / "s3", free_port())  # never started: nothing listens there
    (data / "bluegrass-cloud.toml").write_text(closed.config_text())
    line = one_line_error(cloud("replicate", check=False))
    assert "connection refused" in line, line
    assert not (data / "replica" / "state").exists()
    closed.start()
    try:
        out = as_json(cloud("replicate", "--json"))
    finally:
        closed.stop()
    # The secret was made by the failed run; the first run that completes still says it.
    assert out["admin_secret_created"] == str(data / "replica" / "admin.json")


def doc_scripts() -> list[str]:
    """The shell blocks of docs/replica.md's "Recovering with rclone and git alone"."""
    text = (Path(__file__).parents[2] / "docs" / "replica.md").read_text()
    section = text.split("## Recovering with rclone and git alone", 1)[1].split("\n## ", 1)[0]
    return [block.split("\n", 1)[1] for block in section.split("```sh")[1:]]


def test_docs_recovery_with_rclone_and_git_alone(world: World, tmp_path: Path) -> None:
    """docs/replica.md's commands, as written, with nothing of Bluegrass on PATH."""
    scripts = doc_scripts()
    assert len(scripts) == 3
    scripts = [s.split("```", 1)[0] for s in scripts]
    tools = tmp_path / "bin"
    tools.mkdir()
    for name, path in (
        ("rclone", VENV_BIN / "rclone"),
        ("git", shutil.which("git")),
        ("sha256sum", shutil.which("sha256sum")),
    ):
        assert path is not None
        (tools / name).symlink_to(Path(path).resolve())
    work = tmp_path / "work"
    work.mkdir()
    env = {
        "PATH": str(tools),
        "HOME": str(tmp_path),
        "ENDPOINT": world.s3.endpoint,
        "BUCKET": "backups",
        "KEY_ID": ACCESS_KEY,
        "SECRET": SECRET_KEY,
    }
    admin = json.loads((world.data / "replica" / "admin.json").read_text())
    env |= {"ADMIN_PASSWORD": admin["password"], "ADMIN_PASSWORD2": admin["password2"]}

    def sh(script: str, **extra: str) -> str:
        proc = subprocess.run(
            [shutil.which("bash") or "/bin/bash", "-euo", "pipefail", "-c", script],
            cwd=work,
            env={**env, **extra},
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    # What a person does by eye is done here with json: read the newest manifest, the keys.
    sh(scripts[0])
    newest = max((work / "server" / "manifests").iterdir())
    state = json.loads(newest.read_text())["state"]
    keys_file = next(o["key"] for o in state if o["key"].endswith("/replica-keys.json"))
    alice = json.loads(json.loads((work / "server" / keys_file).read_text())[ALICE])
    # One shell session in the docs: the first block's exports still hold (its copy again is
    # a no-op).
    sh(
        scripts[0] + scripts[1],
        PREFIX=alice["prefix"],
        PASSWORD=alice["password"],
        PASSWORD2=alice["password2"],
    )
    bundles = chain(work, DOCS)
    printed = sh(scripts[2], SEGMENT=DOCS, BUNDLES=" ".join(bundles))
    newest = max((work / "user" / "manifests").iterdir())
    listed = {b["key"]: b["sha256"] for b in json.loads(newest.read_text())["segments"][DOCS]}
    sums = [line.split()[0] for line in printed.splitlines() if line.endswith(".bundle")]
    assert sums == [listed[f"{DOCS}/{b}"] for b in bundles]
    repo = work / f"{DOCS}.git"
    head = subprocess.run(
        ["git", "--git-dir", str(repo), "rev-parse", "refs/heads/main"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    log = as_json(world.cloud("log", ALICE, DOCS, "--json"))["snapshots"]
    assert head == log[0]["commit"]
    fsck = subprocess.run(["git", "--git-dir", str(repo), "fsck", "--strict"], capture_output=True)
    assert fsck.returncode == 0, fsck.stderr


def chain(work: Path, segment: str) -> list[str]:
    newest = max((work / "user" / "manifests").iterdir())
    bundles = json.loads(newest.read_text())["segments"][segment]
    start = max(i for i, b in enumerate(bundles) if b["kind"] == "full")
    return [b["key"].split("/", 1)[1] for b in bundles[start:]]


def test_without_encryption_the_same_layout_is_plain(tmp_path: Path) -> None:
    """encrypt = false: the layout of docs/replica.md in clear (and the leak test's control:
    the needles it looks for are there when nothing hides them)."""
    s3 = S3Server(tmp_path / "s3", free_port())
    s3.start()
    try:
        data = tmp_path / "data"
        cloud = runner(data)
        cloud("init")
        cloud("user", "add", ALICE)
        live = data / "files" / ALICE / NOTES
        live.mkdir()
        (live / "combination.txt").write_bytes(BERT_NOTE)
        head = as_json(cloud("commit", "--json"))["segments"][0]["commit"]
        (data / "bluegrass-cloud.toml").write_text(s3.config_text(encrypt=False))
        cloud("replicate")
        raw = s3.raw_objects()
        prefix = json.loads((data / "replica" / "keys" / f"{ALICE}.json").read_text())["prefix"]
        assert f"{prefix}/{NOTES}/000001-full.bundle" in raw
        assert raw[f"{prefix}/{NOTES}/000001.refs"] == f"{head} refs/heads/main\n".encode()
        assert any(k.startswith("server/state/") and k.endswith("/bluegrass.db") for k in raw)
        assert not any(body.startswith(CRYPT_MAGIC) for body in raw.values())
        assert as_json(cloud("replica", "check", "--json"))["ok"]
        fresh = tmp_path / "fresh"
        (fresh / "replica").mkdir(parents=True)
        shutil.copy(data / "bluegrass-cloud.toml", fresh)
        shutil.copy(data / "replica" / "admin.json", fresh / "replica")
        rebuilt = as_json(runner(fresh)("rebuild", "--from-replica", "--json"))
        assert rebuilt["segments"][0]["head"] == head
        assert (fresh / "files" / ALICE / NOTES / "combination.txt").read_bytes() == BERT_NOTE
    finally:
        s3.stop()
