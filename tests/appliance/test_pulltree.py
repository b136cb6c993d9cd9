"""bluegrass.appliance.pulltree: what a pull settles around rclone (decision 111).

The plan over listings as rclone gives them, and its filter rules and removals on real trees
with the pinned rclone. The pulls themselves are in tests/security/test_pi_files.py.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from bluegrass.appliance import pulltree
from bluegrass.appliance.files import rclone_env


def listing(root: Path, links: bool) -> pulltree.Listing:
    proc = subprocess.run(
        pulltree.listing_argv(str(root), Path(os.devnull), (), links),
        capture_output=True,
        env=rclone_env(),
        check=True,
    )
    return pulltree.parse_listing(proc.stdout)


def test_a_conflict_leaves_the_link_out_and_a_kind_change_clears_the_way() -> None:
    remote = {
        "esc.rclonelink": False,
        "esc": True,
        "esc/planted.txt": False,
        "x": False,  # was a link
        "y.rclonelink": False,  # was a file
        "d": False,  # was a folder
        "same.rclonelink": False,
    }
    drive = {
        "esc.rclonelink": False,
        "x.rclonelink": False,
        "y": False,
        "d": True,
        "d/in.txt": False,
        "same.rclonelink": False,
    }
    found = pulltree.plan(remote, drive)
    assert found.conflicts == ["esc.rclonelink"]
    assert found.removed == ["d", "esc.rclonelink", "x.rclonelink", "y"]
    assert "esc: a link and a folder" in found.problems(remote)[0]
    # The sync made esc, x and d; y's link did not arrive, nor esc's folder's file.
    after = {"esc": True, "x": False, "d": False, "same.rclonelink": False}
    assert pulltree.missing(remote, after, found.conflicts) == ["esc/planted.txt", "y.rclonelink"]


def test_rules_name_one_path_whatever_its_characters(tmp_path: Path) -> None:
    for name in ("a[1]", "a*", "b{x}", "k"):
        (tmp_path / f"{name}.rclonelink").write_text("target")
    rules = pulltree.Plan(conflicts=["a[1].rclonelink", "a*.rclonelink", "b{x}.rclonelink"])
    proc = subprocess.run(
        pulltree.listing_argv(str(tmp_path), Path(os.devnull), rules.rules(), False),
        capture_output=True,
        env=rclone_env(),
        check=True,
    )
    assert list(pulltree.parse_listing(proc.stdout)) == ["k.rclonelink"]


def test_removal_takes_the_link_not_what_it_points_to(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "kept").mkdir(parents=True)
    copy = tmp_path / "copy"
    (copy / "folder" / "deep").mkdir(parents=True)
    (copy / "folder" / "deep" / "f").write_text("f")
    (copy / "folder" / "out").symlink_to(outside)
    (copy / "esc").symlink_to(outside)
    seen = listing(copy, links=True)
    assert seen == {
        "esc.rclonelink": False,
        "folder": True,
        "folder/deep": True,
        "folder/deep/f": False,
        "folder/out.rclonelink": False,
    }
    pulltree.remove(copy, "esc.rclonelink")
    pulltree.remove(copy, "folder")
    assert list(copy.iterdir()) == []
    assert [p.name for p in outside.iterdir()] == ["kept"]
