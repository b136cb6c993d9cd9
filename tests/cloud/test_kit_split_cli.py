"""`bluegrass-cloud kit --split K-of-N` and `kit --combine`, through the real command.

The kit is built from a real data root with a [replica] table (no S3 server is needed to
write a kit); the PDFs are read back with pdftotext and zbarimg as their reader would.
"""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.cloud.test_replica import runner
from tests.support.s3 import SECRET_KEY, S3Server

KIT_KEY = ("AKIABLUEGRASSKIT0001", "bluegrassKitReadOnlySecret0123456789abcd")


def _need(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        pytest.skip(f"system tool not installed: {tool}")
    return found


def _text(pdf: Path) -> str:
    return subprocess.run(
        [_need("pdftotext"), str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture
def data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    cloud = runner(data)
    cloud("init")
    cloud("user", "add", "alice")
    config = S3Server(tmp_path / "s3", 9).config_text(
        kit_access_key_id=KIT_KEY[0], kit_secret_access_key=KIT_KEY[1]
    )
    (data / "bluegrass-cloud.toml").write_text(config)
    return data


@pytest.mark.parametrize(
    ("scheme", "says"),
    [
        ("3-of-2", "--split 3-of-2: needs 3 sheets but makes only 2"),
        ("0-of-3", "--split 0-of-3: one sheet alone would open everything"),
        ("1-of-1", "--split 1-of-1: one sheet alone would open everything"),
        ("2-of-17", "--split 2-of-17: at most 16 sheets"),
        ("lots", "--split 'lots': expected K-of-N"),
    ],
)
def test_a_bad_split_is_one_clear_line_and_writes_nothing(
    data: Path, tmp_path: Path, scheme: str, says: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    done = runner(data)(
        "kit", "alice", "--out", str(out / "kit.pdf"), "--split", scheme, check=False
    )
    assert done.returncode != 0
    assert says in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert list(out.iterdir()) == []


def test_an_existing_sheet_stops_the_split_before_anything_is_written(
    data: Path, tmp_path: Path
) -> None:
    (tmp_path / "kit-share-2-of-3.pdf").write_bytes(b"an older sheet")
    done = runner(data)(
        "kit", "alice", "--out", str(tmp_path / "kit.pdf"), "--split", "2-of-3", check=False
    )
    assert done.returncode != 0 and "kit-share-2-of-3.pdf: already exists" in done.stderr
    assert sorted(p.name for p in tmp_path.glob("kit*")) == ["kit-share-2-of-3.pdf"]
    assert (tmp_path / "kit-share-2-of-3.pdf").read_bytes() == b"an older sheet"


def test_a_split_kit_prints_no_secret_and_two_sheets_give_them_back(
    data: Path, tmp_path: Path
) -> None:
    cloud = runner(data)
    out = tmp_path / "kit.pdf"
    done = json.loads(
        cloud("kit", "alice", "--out", str(out), "--split", "2-of-3", "--json").stdout
    )
    sheets = [tmp_path / f"kit-share-{i}-of-3.pdf" for i in (1, 2, 3)]
    assert done["sheets"] == [str(p) for p in sheets]
    for path in (out, *sheets):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    secret = json.loads((data / "replica" / "keys" / "alice.json").read_text())
    main = _text(out)
    for value in (secret["password"], secret["password2"], KIT_KEY[1], SECRET_KEY):
        assert value not in main.replace("\n", "")
    assert "are not printed here: they are split between 3 sheets" in main.replace("\n", " ")
    assert "scan the codes" not in main.replace("\n", " ")  # there are none
    assert secret["prefix"] in main  # not a secret: it says where, and opens nothing
    # No QR code is left on the main kit (each held a secret).
    pages = tmp_path / "pages"
    pages.mkdir()
    subprocess.run([_need("pdftoppm"), "-png", "-r", "150", str(out), str(pages / "p")], check=True)
    for page in pages.iterdir():
        decoded = subprocess.run(
            [_need("zbarimg"), "--raw", "-q", str(page)], capture_output=True, text=True
        )
        assert decoded.stdout == "", decoded.stdout

    words = tmp_path / "words.txt"
    words.write_text(_text(sheets[2]) + _text(sheets[0]))
    combined = cloud("kit", "--combine", str(words)).stdout.splitlines()
    assert sorted(combined) == sorted(
        [
            f"KEY_SECRET={KIT_KEY[1]}",
            f"PASSWORD={secret['password']}",
            f"PASSWORD2={secret['password2']}",
        ]
    )
    # One sheet is not enough, said in one line.
    words.write_text(_text(sheets[1]))
    alone = cloud("kit", "--combine", str(words), check=False)
    assert alone.returncode != 0
    assert "the words do not combine: needs the words of 2 different sheets, got 1" in (
        alone.stderr
    )
    assert secret["password"] not in alone.stdout + alone.stderr


def test_the_server_kit_splits_the_administrators_secrets(data: Path, tmp_path: Path) -> None:
    cloud = runner(data)
    out = tmp_path / "server.pdf"
    cloud("kit", "--server", "--out", str(out), "--split", "3-of-4")
    admin = json.loads((data / "replica" / "admin.json").read_text())
    main = _text(out).replace("\n", "")
    assert admin["password"] not in main and admin["password2"] not in main
    sheets = [tmp_path / f"server-share-{i}-of-4.pdf" for i in (1, 2, 3, 4)]
    words = tmp_path / "words.txt"
    words.write_text("".join(_text(p) for p in (sheets[3], sheets[1], sheets[0])))
    combined = cloud("kit", "--combine", str(words)).stdout.splitlines()
    assert f"PASSWORD={admin['password']}" in combined
    assert f"PASSWORD2={admin['password2']}" in combined
    # Two of four is one short, whichever two.
    words.write_text(_text(sheets[2]) + _text(sheets[3]))
    short = cloud("kit", "--combine", str(words), check=False)
    assert short.returncode != 0 and "needs the words of 3 different sheets, got 2" in short.stderr


def test_combine_takes_only_its_file(data: Path, tmp_path: Path) -> None:
    done = runner(data)("kit", "alice", "--combine", str(tmp_path / "w.txt"), check=False)
    assert done.returncode != 0 and "takes no USER, --server, --out or --split" in done.stderr
    (tmp_path / "w.txt").write_text("no shares here\n")
    done = runner(data)("kit", "--combine", str(tmp_path / "w.txt"), check=False)
    assert done.returncode != 0 and "no share found" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
