"""The drive speaks for itself: README and RECOVERY.html on a drive the appliance mirrored.

A real mirror job (bluegrass-appliance over git smart HTTP) fills a folder standing in for the
drive; the README's commands are then run literally with only git, sh, tar and mkdir on PATH,
and RECOVERY.html is opened from file:// in real Chromium. A folder on the drive named like
markup shows as text, never as markup.
"""

from __future__ import annotations

import filecmp
import html
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from bluegrass.appliance import readme

from tests.appliance.conftest import USER, Appliance, CloudData, enrollment, git
from tests.appliance.fakecloud import FakeCloud
from tests.conftest import ROOT, require_tool

MARKUP_NAME = "<b>x<script>&\"y'"  # no '/': it is a folder's name


def _mirrored(
    appliance: Appliance, cloud_data: CloudData, fake_cloud: FakeCloud, drive: Path
) -> dict[str, list[str]]:
    """Two segments, docs with two snapshots; {segment: its commits, newest first}."""
    docs = cloud_data.files("docs")
    (docs / "letter.txt").write_text("dear grandma, v1\n")
    (docs / "sub").mkdir()
    (docs / "sub" / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (docs / "sub" / "run.sh").chmod(0o755)
    cloud_data.commit("docs")
    (docs / "letter.txt").write_text("dear grandma, v2\n")
    (docs / "bytes.bin").write_bytes(bytes(range(256)) * 7)
    cloud_data.commit("docs")
    (cloud_data.files("photos") / "cat.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    cloud_data.commit("photos")
    appliance.enroll(enrollment(fake_cloud.port))
    appliance.global_args = ["--drive-dir", str(drive)]
    result = appliance.json("mirror")
    assert result["outcome"] == "ok", result
    return {
        seg: git("--git-dir", str(cloud_data.repo_path(seg)), "log", "--format=%ci", "main")
        .stdout.strip()
        .splitlines()
        for seg in ("docs", "photos")
    }


def test_readme_lists_each_segment_with_its_latest_date_and_count(
    appliance: Appliance, cloud_data: CloudData, fake_cloud: FakeCloud, tmp_path: Path
) -> None:
    drive = tmp_path / "drive"
    dates = _mirrored(appliance, cloud_data, fake_cloud, drive)
    readme = (drive / "README").read_text()
    page = (drive / "RECOVERY.html").read_text()
    assert f"    docs: latest snapshot {dates['docs'][0]}, 2 snapshots" in readme
    assert f"    photos: latest snapshot {dates['photos'][0]}, 1 snapshot\n" in readme
    for date in (dates["docs"][0], dates["photos"][0]):
        assert html.escape(date) in page
    # Refreshed when the mirror brings something new: a third snapshot of docs.
    (cloud_data.files("docs") / "new.txt").write_text("third\n")
    cloud_data.commit("docs")
    assert appliance.json("mirror")["outcome"] == "ok"
    newest = git("--git-dir", str(cloud_data.repo_path("docs")), "log", "-1", "--format=%ci")
    assert (
        f"docs: latest snapshot {newest.stdout.strip()}, 3 snapshots"
        in (drive / "README").read_text()
    )
    assert not list(drive.glob(".*.tmp"))


def _readme_commands(readme: str) -> list[str]:
    """Every command block of the README's numbered steps, as printed (5-space indent)."""
    blocks: list[str] = []
    current: list[str] = []
    for line in readme.splitlines():
        if line.startswith("     ") and line.strip():
            current.append(line[5:])
        elif current:
            blocks.append("\n".join(current))
            current = []
    return blocks


def _only_git_path(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "only-git"
    bin_dir.mkdir()
    for tool in ("git", "sh", "tar", "mkdir"):
        (bin_dir / tool).symlink_to(require_tool(tool))
    return bin_dir


def test_following_the_readme_literally_with_only_git_gives_files_back(
    appliance: Appliance, cloud_data: CloudData, fake_cloud: FakeCloud, tmp_path: Path
) -> None:
    drive = tmp_path / "drive"
    _mirrored(appliance, cloud_data, fake_cloud, drive)
    blocks = _readme_commands((drive / "README").read_text())
    assert blocks[0].startswith('cd "/media/$USER/')
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "PATH": str(_only_git_path(tmp_path)), "USER": "heir"}
    # Step 1's folder is where this test's drive is, as the step tells a reader to change it.
    script = [f'cd "{drive}"', *blocks[1:]]
    one_file = next(b for b in script if " show " in b and "ID:files/" in b)
    script.remove(one_file)
    first_id = git(
        "--git-dir", str(cloud_data.repo_path("docs")), "log", "--format=%h", "main"
    ).stdout.split()[-1]
    script.append(
        one_file.replace("USER", USER)
        .replace("FOLDER", "docs")
        .replace("ID", first_id)
        .replace("path/to/file", "letter.txt")
    )
    done = subprocess.run(
        ["sh", "-e", "-c", "\n".join(script)],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"== bluegrass/{USER}/docs.git" in done.stdout
    for seg in ("docs", "photos"):
        latest = home / "restored" / "latest" / USER / seg
        compare = filecmp.dircmp(cloud_data.files(seg), latest)
        assert not compare.left_only and not compare.right_only and not compare.diff_files
        for path in cloud_data.files(seg).rglob("*"):
            if path.is_file():
                assert (latest / path.relative_to(cloud_data.files(seg))).read_bytes() == (
                    path.read_bytes()
                )
    assert os.access(home / "restored" / "latest" / USER / "docs" / "sub" / "run.sh", os.X_OK)
    # The example date of the as-of step is before these snapshots: each folder is named.
    assert f"bluegrass/{USER}/docs.git: no snapshot before" in done.stdout
    assert (home / "file").read_text() == "dear grandma, v1\n"


def _add_markup_named_segment(drive: Path) -> None:
    source = drive / "bluegrass" / USER / "photos.git"
    shutil.copytree(source, drive / "bluegrass" / USER / f"{MARKUP_NAME}.git", symlinks=True)


playwright_sync = pytest.importorskip("playwright.sync_api")
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--no-first-run"]


def test_recovery_html_opens_from_the_drive_in_a_browser_with_names_as_text(
    appliance: Appliance, cloud_data: CloudData, fake_cloud: FakeCloud, tmp_path: Path
) -> None:
    drive = tmp_path / "drive"
    dates = _mirrored(appliance, cloud_data, fake_cloud, drive)
    _add_markup_named_segment(drive)
    assert appliance.json("mirror")["outcome"] == "ok"  # a job refreshes the page
    source = (drive / "RECOVERY.html").read_text()
    assert "<b>x" not in source and "<script>" not in source
    assert html.escape(MARKUP_NAME, quote=True) in source
    assert not re.search(r"<(script|img|link|iframe)\b", source)
    assert f"{MARKUP_NAME}:" in (drive / "README").read_text()

    executable = require_tool("chromium")
    shots = Path(os.environ.get("BLUEGRASS_SCREENSHOTS") or tmp_path / "shots")
    shots = shots if shots.is_absolute() else ROOT / shots
    shots.mkdir(parents=True, exist_ok=True)
    with playwright_sync.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto((drive / "RECOVERY.html").as_uri())
            names = page.locator("tr.segment td.name").all_inner_texts()
            assert names == [MARKUP_NAME, "docs", "photos"]
            assert page.locator("tr.segment td.name b").count() == 0
            row = page.locator("tr.segment", has_text="docs")
            assert row.is_visible()
            assert dates["docs"][0] in row.inner_text()
            commands = page.locator("section.step pre").all_inner_texts()
            assert any(re.search(r"git --git-dir \S+ archive \"?main:files", c) for c in commands)
            assert page.locator("section.step pre").first.is_visible()
            # Nothing fetched but the page itself: no remote or local resource.
            assert requests == [(drive / "RECOVERY.html").as_uri()]
            page.screenshot(path=str(shots / "recovery-html.png"), full_page=True)
        finally:
            browser.close()


def test_an_unchanged_repository_is_not_asked_again(
    appliance: Appliance,
    cloud_data: CloudData,
    fake_cloud: FakeCloud,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    drive = tmp_path / "drive"
    _mirrored(appliance, cloud_data, fake_cloud, drive)
    readme.write(drive, "BLUEGRASS")
    before = (drive / "README").read_text()
    assert "docs: latest snapshot" in before
    # No git at all now: what is listed must come from what this process already read.
    empty = tmp_path / "no-tools"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    readme.write(drive, "BLUEGRASS")
    assert (drive / "README").read_text() == before
