"""The printed recovery kit, read and followed literally.

One module-wide world: a cloud data root with three snapshots of two segments of alice (and
bertrand's, which alice's kit must not open), a drive the appliance mirrored from it (a folder
standing in for the drive, fetched by the real `bluegrass-appliance mirror` over git smart
HTTP), and a replica on `rclone serve s3` uploaded in two runs (a full bundle, then an
incremental one). Each test builds a kit with the real command, extracts its text with
pdftotext, and runs the commands exactly as printed with POSIX sh and only git and rclone
(plus tar, mkdir, cat) on PATH, a fresh HOME; all it types itself is what the kit tells the
reader to type (the drive's folder, a date, one file's name and id).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.appliance.conftest import Appliance, enrollment
from tests.appliance.fakecloud import FakeCloud
from tests.cloud.kitsupport import bare_shell, commands, need, pdf_text, run_sh, tree
from tests.cloud.test_replica import runner
from tests.conftest import VENV_BIN
from tests.support.net import free_port
from tests.support.s3 import ACCESS_KEY, SECRET_KEY, S3Server

ALICE, BERT = "alice", "bertrand"
DOCS, PHOTOS, EMPTY = "documents", "photos", "empty"
# The kit's own key: rclone serve s3 takes it beside the server's (read-only is the bucket
# owner's business; what is tested here is that the kit prints this one, not the server's).
KIT_KEY = ("AKIABLUEGRASSKIT0001", "bluegrassKitReadOnlySecret0123456789abcd")
BERT_NOTE = b"bertrand's private note\n"


@dataclass
class Snapshot:
    when: datetime
    files: dict[str, dict[str, object]]  # segment -> tree() of its live folder then


@dataclass
class World:
    base: Path
    data: Path
    cloud: object
    drive: Path
    s3: S3Server
    snapshots: list[Snapshot]
    kit: Path
    server_kit: Path


WEB_PASSWORD = "alice's web password 42"


def _set_web_password(data: Path) -> None:
    subprocess.run(
        [
            str(VENV_BIN / "bluegrass-cloud"),
            "--data",
            str(data),
            "user",
            "password",
            ALICE,
            "--password-stdin",
        ],
        input=WEB_PASSWORD + "\n",
        text=True,
        capture_output=True,
        check=True,
    )


def _write_day(live: dict[str, Path], day: int) -> None:
    docs, photos = live[DOCS], live[PHOTOS]
    if day == 0:
        (docs / "letters").mkdir(parents=True)
        (docs / "letters" / "to grandma.txt").write_bytes(b"Dear grandma,\n")
        (docs / "notes.md").write_bytes("caf\u00e9 notes \u2014 day one\n".encode())
        (docs / "run.sh").write_bytes(b"#!/bin/sh\necho hello\n")
        (docs / "run.sh").chmod(0o755)
        (docs / "latest").symlink_to("notes.md")
        (photos / "cat.jpg").write_bytes(os.urandom(200_000))
        (photos / "d\u00e9j\u00e0 vu.png").write_bytes(os.urandom(3000))
    elif day == 1:
        (docs / "notes.md").write_bytes(b"notes, day two\n")
        (docs / "letters" / "to grandma.txt").unlink()
        (docs / "letters" / "to aunt.txt").write_bytes(b"Dear aunt,\n" * 1000)
        (photos / "dog.jpg").write_bytes(os.urandom(50_000))
    else:
        (docs / "notes.md").write_bytes(b"notes, day three\n")
        (docs / "latest").unlink()
        (docs / "latest").symlink_to("letters/to aunt.txt")
        (photos / "cat.jpg").unlink()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("kit")
    s3 = S3Server(base / "s3", free_port(), more_keys=(KIT_KEY,))
    s3.start()
    try:
        data = base / "data"
        cloud = runner(data)
        cloud("init")
        cloud("user", "add", ALICE)
        cloud("user", "add", BERT)
        _set_web_password(data)
        live = {s: data / "files" / ALICE / s for s in (DOCS, PHOTOS)}
        for folder in live.values():
            folder.mkdir()
        # A segment that was always empty: its snapshot has no files/ tree at all.
        (data / "files" / ALICE / EMPTY).mkdir()
        notes = data / "files" / BERT / "notes"
        notes.mkdir()
        (notes / "note.txt").write_bytes(BERT_NOTE)
        cloud("commit", "--user", BERT)
        now = datetime.now(UTC).replace(microsecond=0)
        snapshots = []
        for day, ago in enumerate((6, 4, 2)):
            _write_day(live, day)
            when = now - timedelta(days=ago)
            files = {s: tree(folder) for s, folder in live.items()}
            cloud("commit", "--user", ALICE, "--date", when.isoformat())
            snapshots.append(Snapshot(when, files))
            if day == 1:  # the first replicate: full bundles; the second adds incremental
                (data / "bluegrass-cloud.toml").write_text(
                    s3.config_text(kit_access_key_id=KIT_KEY[0], kit_secret_access_key=KIT_KEY[1])
                )
                cloud("replicate")
        cloud("replicate")

        drive = base / "drive"
        code = enrollment(0)
        with FakeCloud(data / "repos", {ALICE: code.password}) as fake:
            appliance = Appliance(base / "state")
            appliance.enroll(enrollment(fake.port))
            appliance.global_args = ["--drive-dir", str(drive)]
            result = appliance.json("mirror")
            assert result["outcome"] == "ok", result

        kit, server_kit = base / "alice-kit.pdf", base / "server-kit.pdf"
        cloud("kit", ALICE, "--out", str(kit))
        cloud("kit", "--server", "--out", str(server_kit))
        yield World(base, data, cloud, drive, s3, snapshots, kit, server_kit)
    finally:
        s3.stop()


def typed_date(when: datetime) -> str:
    """What a reader types for "as it was just after this snapshot" (the kit: year-month-day
    hour:minute, the computer's time; the shell here runs in UTC)."""
    return (when + timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M")


def restored(home: Path, kind: str, user: str = ALICE) -> dict[str, dict[str, object]]:
    # The empty segment comes back as an empty folder, whatever the date.
    assert (home / "restored" / kind / user / EMPTY).is_dir()
    assert tree(home / "restored" / kind / user / EMPTY) == {}
    return {s: tree(home / "restored" / kind / user / s) for s in (DOCS, PHOTOS)}


def as_of_each_snapshot(
    world: World, steps: dict[str, list[str]], env: dict[str, str], cwd: Path, prefix: str = ""
) -> None:
    home = Path(env["HOME"])
    when_line, *rest = steps["A4"]
    assert when_line.startswith("WHEN="), when_line
    for snap in world.snapshots:
        shutil.rmtree(home / "restored" / "as-of", ignore_errors=True)  # as A4's words say
        run_sh("\n".join([prefix, f'WHEN="{typed_date(snap.when)}"', *rest]), env, cwd)
        assert restored(home, "as-of") == snap.files, snap.when
    # Before the first snapshot there is nothing, and the kit says so.
    shutil.rmtree(home / "restored" / "as-of", ignore_errors=True)
    early = typed_date(world.snapshots[0].when - timedelta(days=1))
    out = run_sh("\n".join([prefix, f'WHEN="{early}"', *rest]), env, cwd)
    assert out.count("no snapshot before") == 3, out


def test_the_drive_steps_bring_back_every_snapshot_byte_exact(world: World, tmp_path: Path) -> None:
    steps = commands(pdf_text(world.kit))
    env = bare_shell(tmp_path)
    cd, *a1 = steps["A1"]
    assert cd.startswith("cd "), cd
    # A1's words: "if yours is elsewhere, type that folder instead".
    open_drive = "\n".join([f"cd '{world.drive}'", *a1])

    listing = run_sh("\n".join([open_drive, *steps["A2"]]), env, tmp_path)
    ids = re.findall(r"^([0-9a-f]{7,}) (\S+ \S+ \S+)", listing, re.MULTILINE)
    assert listing.count("== bluegrass/alice/") == 3 and len(ids) == 7, listing

    run_sh("\n".join([open_drive, *steps["A3"]]), env, tmp_path)
    assert restored(tmp_path, "latest") == world.snapshots[-1].files

    as_of_each_snapshot(world, steps, env, tmp_path, prefix=open_drive)

    # A5, one file: USER, FOLDER, the id (the oldest of documents, from A2's list) and path.
    (one,) = steps["A5"]
    docs_ids = listing.split("== bluegrass/alice/documents.git")[1].split("==")[0]
    oldest = re.findall(r"^([0-9a-f]{7,}) ", docs_ids, re.MULTILINE)[-1]
    typed = (
        one.replace("USER", ALICE)
        .replace("FOLDER", DOCS)
        .replace("ID", oldest)
        .replace("path/to/file", "letters/to grandma.txt")
    )
    run_sh("\n".join([open_drive, typed]), env, tmp_path)
    assert (tmp_path / "file").read_bytes() == b"Dear grandma,\n"


def test_the_bucket_steps_bring_back_every_snapshot_byte_exact(
    world: World, tmp_path: Path
) -> None:
    steps = commands(pdf_text(world.kit))
    env = bare_shell(tmp_path)
    assert f"KEY_ID={KIT_KEY[0]}" in steps["secrets"]
    # B4: "type the commands of A2, A3 and A4 here".
    session = [*steps["secrets"], *steps["B1"], *steps["B2"], *steps["B3"], *steps["A3"]]
    run_sh("\n".join(session), env, tmp_path)
    assert restored(tmp_path, "latest") == world.snapshots[-1].files
    # Only alice's area was opened: bertrand's note is nowhere under the reader's folders.
    for path in tmp_path.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert BERT_NOTE not in path.read_bytes(), path
    # The reader is still in the replica's folder (B2's cd): A4 there, for every date.
    as_of_each_snapshot(world, steps, env, tmp_path / "restored" / "replica")
    # Two runs: a full bundle and an incremental one per segment, both fetched.
    bundles = sorted(
        p.name for p in (tmp_path / "restored/replica/download/alice/documents").iterdir()
    )
    assert [b for b in bundles if b.endswith(".bundle")] == [
        "000001-full.bundle",
        "000002-inc.bundle",
    ]


def test_the_server_kit_opens_every_user_from_the_bucket(world: World, tmp_path: Path) -> None:
    steps = commands(pdf_text(world.server_kit))
    env = bare_shell(tmp_path)
    shown = run_sh("\n".join([*steps["secrets"], *steps["B1"], *steps["B2"]]), env, tmp_path)
    # B3: the reader reads each user's prefix and passwords from what B2 showed.
    users = {u: json.loads(text) for u, text in json.loads(shown).items()}
    assert set(users) == {ALICE, BERT}
    typed = []
    for line in steps["B3"]:
        name = line.split("=", 1)[0]
        field = {"WHO": "user", "AREA": "prefix"}.get(name, name.lower())
        typed.append(f"{name}='{users[ALICE][field]}'")
    session = [
        *steps["secrets"],
        *steps["B1"],
        *steps["B2"],
        *typed,
        *steps["B4"],
        *steps["B5"],
        *steps["A3"],
    ]
    run_sh("\n".join(session), env, tmp_path)
    assert restored(tmp_path, "latest") == world.snapshots[-1].files


def decoded(pdf: Path, folder: Path) -> set[str]:
    """What zbarimg reads from every page, rendered at a printer's 300 dpi."""
    folder.mkdir()
    subprocess.run([need("pdftoppm"), "-png", "-r", "300", str(pdf), str(folder / "p")], check=True)
    found: set[str] = set()
    for page in sorted(folder.glob("p-*.png")):
        proc = subprocess.run(
            [need("zbarimg"), "--raw", "-q", str(page)],
            capture_output=True,
            text=True,
            check=False,
        )
        found.update(proc.stdout.split())
    return found


def test_the_qr_codes_decode_to_exactly_the_secrets(world: World, tmp_path: Path) -> None:
    found = decoded(world.kit, tmp_path / "user")
    secret = json.loads((world.data / "replica" / "keys" / f"{ALICE}.json").read_text())
    assert found == {secret["password"], secret["password2"], KIT_KEY[1]}
    admin = json.loads((world.data / "replica" / "admin.json").read_text())
    assert decoded(world.server_kit, tmp_path / "server") == {
        admin["password"],
        admin["password2"],
        KIT_KEY[1],
    }
    # And the same values as text, where the reader types them.
    lines = commands(pdf_text(world.kit))["secrets"]
    assert f"PASSWORD={secret['password']}" in lines
    assert f"PASSWORD2={secret['password2']}" in lines
    assert f"AREA={secret['prefix']}" in lines


def test_each_kit_is_two_printed_pages(world: World) -> None:
    for pdf in (world.kit, world.server_kit):
        assert re.search(r"page 2 of 2\s*\f?\s*$", pdf_text(pdf)), pdf


def test_the_kit_holds_no_web_password_and_no_server_key(world: World) -> None:
    text = pdf_text(world.kit)
    assert "web password 42" not in text
    assert "bluegrassTestSecretKey" not in text  # the server's own S3 secret
    admin = json.loads((world.data / "replica" / "admin.json").read_text())
    assert admin["password"] not in text
    bert = json.loads((world.data / "replica" / "keys" / f"{BERT}.json").read_text())
    assert bert["password"] not in text and bert["prefix"] not in text
    assert oct((world.kit.stat().st_mode) & 0o777) == "0o600"


def test_a_bundle_no_manifest_names_is_fetched_harmlessly(tmp_path: Path) -> None:
    """What a killed run leaves: a whole bundle under the next number that no manifest names.
    The worst case is one whose commits the later bundles do not descend from (the server
    was rebuilt from the replica after the kill, so its history went on without them): the
    kit's loop fetches every bundle in numeric order with `+`, the highest one's branch wins,
    and every file of the newest snapshot comes back. Without `+` the fetch is refused."""
    from bluegrass.cloud.replica import keys
    from bluegrass.cloud.replica.remote import Bucket
    from bluegrass.cloud.replica.settings import from_config
    from bluegrass.cloud.settings import load

    s3 = S3Server(tmp_path / "s3", free_port())
    s3.start()
    try:
        data = tmp_path / "data"
        cloud = runner(data)
        cloud("init")
        cloud("user", "add", ALICE)
        live = data / "files" / ALICE / DOCS
        live.mkdir()
        (live / "a.txt").write_bytes(b"day one\n")
        cloud("commit", "--user", ALICE)
        (data / "bluegrass-cloud.toml").write_text(s3.config_text())
        cloud("replicate")  # 000001-full
        # The killed run's bundle: a commit on top of day one that the server never kept.
        repo = data / "repos" / ALICE / f"{DOCS}.git"
        git = ["git", "--git-dir", str(repo)]
        head = subprocess.run(
            [*git, "rev-parse", "main"], capture_output=True, text=True, check=True
        ).stdout.strip()
        lost = subprocess.run(
            [*git, "commit-tree", f"{head}^{{tree}}", "-p", head, "-m", "lost in the kill"],
            capture_output=True,
            text=True,
            check=True,
            env={
                **os.environ,
                "GIT_AUTHOR_NAME": "x",
                "GIT_AUTHOR_EMAIL": "x@x",
                "GIT_COMMITTER_NAME": "x",
                "GIT_COMMITTER_EMAIL": "x@x",
            },
        ).stdout.strip()
        subprocess.run([*git, "update-ref", "refs/heads/lost", lost], check=True)
        bundle = tmp_path / "000002-inc.bundle"
        subprocess.run(
            [*git, "bundle", "create", str(bundle), "refs/heads/lost", f"^{head}"],
            check=True,
            capture_output=True,
        )
        subprocess.run([*git, "update-ref", "-d", "refs/heads/lost"], check=True)
        # Its branch is main, as a real bundle's: rename the ref inside by re-bundling from a copy.
        copy = tmp_path / "copy.git"
        subprocess.run(["git", "clone", "--quiet", "--bare", str(repo), str(copy)], check=True)
        subprocess.run(
            [
                "git",
                "--git-dir",
                str(copy),
                "fetch",
                "--quiet",
                str(bundle),
                "+refs/heads/lost:refs/heads/main",
            ],
            check=True,
        )
        bundle.unlink()
        subprocess.run(
            ["git", "--git-dir", str(copy), "bundle", "create", str(bundle), "main", f"^{head}"],
            check=True,
            capture_output=True,
        )
        settings = from_config(load(data))
        secret = keys.user_secret(data, ALICE)
        subprocess.run(
            [str(VENV_BIN / "rclone"), "copyto", str(bundle), f"bgarea:{DOCS}/000002-inc.bundle"],
            env=Bucket(settings).env(secret),
            check=True,
            capture_output=True,
        )
        (live / "a.txt").write_bytes(b"day two\n")
        (live / "b.txt").write_bytes(b"new on day two\n")
        cloud("commit", "--user", ALICE)
        cloud("replicate")  # 000003-inc, after 000001 (the manifest's), not after 000002
        cloud("kit", ALICE, "--out", str(tmp_path / "kit.pdf"))
        steps = commands(pdf_text(tmp_path / "kit.pdf"))
        home = tmp_path / "home"
        home.mkdir()
        env = bare_shell(home)
        # No kit key here: the kit says to type a key that can read the bucket; the server's.
        secrets = [
            {"KEY_ID=": f"KEY_ID={ACCESS_KEY}", "KEY_SECRET=": f"KEY_SECRET={SECRET_KEY}"}.get(
                line, line
            )
            for line in steps["secrets"]
        ]
        session = [*secrets, *steps["B1"], *steps["B2"]]
        run_sh("\n".join(session), env, home)
        names = sorted(
            p.name for p in (home / "restored/replica/download/alice" / DOCS).glob("*.bundle")
        )
        assert names == ["000001-full.bundle", "000002-inc.bundle", "000003-inc.bundle"]
        unforced = [c.replace("'+refs/*:refs/*'", "'refs/*:refs/*'") for c in steps["B3"]]
        proc = subprocess.run(
            [
                env["PATH"] + "/sh",
                "-e",
                "-c",
                "\n".join([f"cd '{home}/restored/replica'", "WHO=alice", *unforced]),
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode != 0, "the unnamed bundle's branch was taken as a fast-forward"
        shutil.rmtree(home / "restored/replica/bluegrass")
        run_sh("\n".join([*session, *steps["B3"], *steps["A3"]]), env, home)
        assert tree(home / "restored/latest/alice" / DOCS) == {
            "a.txt": b"day two\n",
            "b.txt": b"new on day two\n",
        }
    finally:
        s3.stop()
