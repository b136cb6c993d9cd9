"""A split kit followed literally: 2 of 3 sheets combined without Bluegrass, then the main
kit's bucket steps with only git and rclone bring every snapshot back byte-exact.

The world is tests/cloud/test_kit.py's (a cloud data root with three snapshots of alice's two
segments, a replica on `rclone serve s3` uploaded in two runs). The kit is made with the real
`bluegrass-cloud kit --split 2-of-3`; the sheets' words are read with pdftotext and combined
with the reference SLIP-39 tool installed from the package index into a venv of its own (no
Bluegrass there), exactly as a sheet says; the reader then types each secret after its name's
= where the main kit leaves it out, and runs the main kit's commands as printed.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from bluegrass.cloud.kit import split

from tests.cloud import test_kit, test_kit_split
from tests.cloud.kitsupport import bare_shell, commands, pdf_text, run_sh
from tests.cloud.test_kit import ALICE, BERT_NOTE, KIT_KEY, World, as_of_each_snapshot, restored
from tests.cloud.test_kit_split import _pdftotext, _shamir_recover, combine_without_bluegrass

# The fixtures this module shares: test_kit's world (built again here, module-scoped) and
# the reference tool installed as a sheet says.
world = test_kit.world
reference_tool = test_kit_split.reference_tool


@pytest.fixture(scope="module")
def split_kit(world: World) -> tuple[Path, list[Path]]:
    out = world.base / "alice-split.pdf"
    world.cloud("kit", ALICE, "--out", str(out), "--split", "2-of-3")  # type: ignore[operator]
    return out, [world.base / f"alice-split-share-{i}-of-3.pdf" for i in (1, 2, 3)]


def test_two_of_three_sheets_and_the_kit_bring_back_every_snapshot_from_the_bucket(
    world: World,
    split_kit: tuple[Path, list[Path]],
    reference_tool: dict[str, str],
    tmp_path: Path,
) -> None:
    kit, sheets = split_kit
    steps = commands(pdf_text(kit))
    secret = json.loads((world.data / "replica" / "keys" / f"{ALICE}.json").read_text())
    blank = [line for line in steps["secrets"] if line.endswith("=")]
    assert sorted(blank) == ["KEY_SECRET=", "PASSWORD2=", "PASSWORD="]
    for value in (secret["password"], secret["password2"], KIT_KEY[1]):
        assert value not in pdf_text(kit).replace("\n", "")

    found = combine_without_bluegrass(
        [_pdftotext(sheets[2]), _pdftotext(sheets[0])], reference_tool
    )
    assert set(found) == {"PASSWORD", "PASSWORD2", "KEY_SECRET"}
    typed = [
        f"{line}{shlex.quote(found[line[:-1]])}" if line in blank else line
        for line in steps["secrets"]
    ]
    env = bare_shell(tmp_path)
    run_sh(
        "\n".join([*typed, *steps["B1"], *steps["B2"], *steps["B3"], *steps["A3"]]), env, tmp_path
    )
    assert restored(tmp_path, "latest") == world.snapshots[-1].files
    for path in tmp_path.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert BERT_NOTE not in path.read_bytes(), path
    # Every snapshot, as of its date, from the replica's folder (where B2 left the reader).
    as_of_each_snapshot(world, steps, env, tmp_path / "restored" / "replica")


def test_one_sheet_alone_opens_nothing(
    split_kit: tuple[Path, list[Path]], reference_tool: dict[str, str]
) -> None:
    for share in split.parse_shares(_pdftotext(split_kit[1][1])):
        done = _shamir_recover(reference_tool, [" ".join(share.words)])
        assert "1 of 2 shares needed" in done.stdout
        assert "master secret is" not in done.stdout
