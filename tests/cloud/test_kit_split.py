"""Split kit secrets: K-of-N SLIP-39 sheets, combined with Bluegrass and without it.

The "without" test follows the printed sheet literally: it takes the install and combine
commands out of the PDF's text (pdftotext), installs the reference tool from the package index
into a venv of its own (made with the system's python3, no Bluegrass in it), types two sheets'
words into `shamir recover`, and runs the sheet's conversion command on what it prints.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import stat
import subprocess
from itertools import combinations
from pathlib import Path

import pytest
from bluegrass.cloud.kit import sheets, split

# Secrets shaped as a user's kit holds them: the replica's two (token_urlsafe(32)) and an S3
# secret key that is not base64url of an even length (so it goes as text, in two parts).
SECRETS = {
    "password": secrets.token_urlsafe(32),
    "password2": secrets.token_urlsafe(32),
    "s3 secret key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
}
CONTEXT = sheets.SheetContext(
    "Bluegrass recovery kit for alice",
    "Made 2026-12-07 for the account 'alice' on https://cloud.example.org.",
)


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("3-of-2", "needs 3 sheets but makes only 2"),
        ("0-of-3", "one sheet alone would open everything"),
        ("1-of-1", "one sheet alone would open everything"),
        ("1-of-3", "one sheet alone would open everything"),
        ("2-of-17", "at most 16 sheets"),
        ("two-of-three", "expected K-of-N"),
        ("2of3", "expected K-of-N"),
        ("", "expected K-of-N"),
    ],
)
def test_bad_schemes_are_refused_by_name(given: str, says: str) -> None:
    with pytest.raises(split.SplitError) as err:
        split.parse_scheme(given)
    assert says in str(err.value)
    assert "\n" not in str(err.value)


def test_any_k_sheets_give_every_secret_back_and_fewer_give_nothing() -> None:
    long_text = "a secret of more than thirty-two bytes, with spaces and ünïcödé"
    given = {**SECRETS, "long": long_text, "short": "x"}
    made = split.split(given, split.parse_scheme("3-of-5"))
    assert len(made) == 5
    for chosen in combinations(made, 3):
        assert split.recover([s for sheet in chosen for s in sheet.shares]) == given
    for chosen in combinations(made, 2):
        with pytest.raises(split.SplitError, match="do not combine"):
            split.recover([s for sheet in chosen for s in sheet.shares])
    # The sheets differ: no sheet repeats another's words.
    assert len({sheet.shares[0].words for sheet in made}) == 5


def test_master_secrets_stay_within_slip39s_usual_sizes() -> None:
    for text in [*SECRETS.values(), "x" * 100, "y"]:
        _, parts = split.encode(text)
        assert all(16 <= len(p) <= 32 and len(p) % 2 == 0 for p in parts)
        assert split.decode(*split.encode(text)) == text


def _pdftotext(path: Path) -> str:
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed")
    return subprocess.run(
        ["pdftotext", str(path), "-"], check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def sheet_files(tmp_path: Path) -> list[Path]:
    made = split.split(SECRETS, split.parse_scheme("2-of-3"))
    return sheets.write_all(made, CONTEXT, tmp_path / "kit.pdf")


def test_sheets_are_owner_only_pdfs_that_carry_no_secret_in_clear(
    sheet_files: list[Path], tmp_path: Path
) -> None:
    assert [p.name for p in sheet_files] == [f"kit-share-{i}-of-3.pdf" for i in (1, 2, 3)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in sheet_files]
    for path in sheet_files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        text = _pdftotext(path)
        assert "This sheet alone opens nothing" in text
        assert text.count("\f") == 1, "a sheet is one printed page"
        for secret in SECRETS.values():
            assert secret not in text.replace("\n", "")


def test_bluegrass_combines_two_sheets_from_their_printed_text(sheet_files: list[Path]) -> None:
    text = _pdftotext(sheet_files[2]) + _pdftotext(sheet_files[0])
    assert split.recover(split.parse_shares(text)) == SECRETS
    with pytest.raises(split.SplitError, match="do not combine"):
        split.recover(split.parse_shares(_pdftotext(sheet_files[1])))


def _block_after(text: str, marker: str, count: int) -> list[str]:
    lines = text.splitlines()
    at = lines.index(marker)
    return lines[at + 1 : at + 1 + count]


@pytest.fixture(scope="module")
def reference_tool(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A HOME with the reference tool installed by the sheet's own two commands."""
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed")
    home = tmp_path_factory.mktemp("heir")
    made = split.split(SECRETS, split.parse_scheme("2-of-3"))
    path = sheets.write_all(made, CONTEXT, home / "probe.pdf")[0]
    text = _pdftotext(path)
    install = [line for line in text.splitlines() if line.startswith(("python3 -m venv", "~/"))]
    assert install[:2] == [
        "python3 -m venv ~/slip39",
        "~/slip39/bin/pip install 'shamir-mnemonic[cli]==0.3.0'",
    ]
    # The system's python3 and sh, not this project's venv: nothing of Bluegrass is there.
    env = {"HOME": str(home), "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    env.update({k: v for k, v in os.environ.items() if k.startswith(("PIP_", "http", "HTTP"))})
    for command in install[:2]:
        subprocess.run(["sh", "-c", command], cwd=home, env=env, check=True, timeout=300)
    return env


def _shamir_recover(env: dict[str, str], lines: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [f"{env['HOME']}/slip39/bin/shamir", "recover"],
        input="".join(line + "\n" for line in lines),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def combine_without_bluegrass(texts: list[str], env: dict[str, str]) -> dict[str, str]:
    """What a reader does with K sheets' printed text and the reference tool installed as
    the sheet says: `shamir recover` once per secret (one line of words per sheet), then the
    sheet's own command for the secret's kind on the HEX it printed."""
    shares = [split.parse_shares(t) for t in texts]  # only to walk the blocks in order
    commands = {
        kind: "\n".join(_block_after(texts[0], f"[{kind} ...]:", 2))
        for kind in (split.BASE64URL, split.TEXT)
        if f"[{kind} ...]:" in texts[0].splitlines()
    }
    hexes: dict[str, list[str]] = {}
    kinds: dict[str, str] = {}
    for blocks in zip(*shares, strict=True):
        assert len({(b.label, b.part) for b in blocks}) == 1
        done = _shamir_recover(env, [" ".join(b.words) for b in blocks])
        found = re.search(r"Your master secret is: ([0-9a-f]+)", done.stdout)
        assert found, done.stdout + done.stderr
        hexes.setdefault(blocks[0].label, []).append(found.group(1))
        kinds[blocks[0].label] = blocks[0].kind
    recovered = {}
    for label, parts in hexes.items():
        command = (
            commands[kinds[label]]
            .replace(" HEX [HEX2 ...]", " HEX")
            .replace(" HEX", " " + " ".join(parts))
        )
        out = subprocess.run(
            ["sh", "-c", command], env=env, capture_output=True, text=True, check=True
        )
        recovered[label] = out.stdout.rstrip("\n")
    return recovered


def test_two_sheets_combine_without_bluegrass_as_the_sheet_says(
    sheet_files: list[Path], reference_tool: dict[str, str]
) -> None:
    texts = [_pdftotext(p) for p in (sheet_files[0], sheet_files[2])]
    assert combine_without_bluegrass(texts, reference_tool) == SECRETS


def test_one_sheet_alone_gives_nothing_without_bluegrass(
    sheet_files: list[Path], reference_tool: dict[str, str]
) -> None:
    share = split.parse_shares(_pdftotext(sheet_files[1]))[0]
    done = _shamir_recover(reference_tool, [" ".join(share.words)])
    assert "1 of 2 shares needed" in done.stdout
    assert "master secret is" not in done.stdout
