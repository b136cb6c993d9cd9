"""Downloads (zip, tar.gz) whose names a Windows extractor would read as somewhere else
(issue 13, finding 8), against a real gunicorn serving the panel over the reference backend.

A Linux name may hold `\\` and `:`. Windows, and the extractors that run there (Explorer,
7-Zip, tar.exe, Python's zipfile), read `\\` as a folder separator and `X:` as a drive, so
`docs/..\\..\\..\\zipslip.txt` would be written three folders above the one chosen. Every
download is fetched over HTTP, extracted with Python's zipfile and tarfile, and every entry
name is checked as Windows would read it: no `\\`, no `:`, no `..` component, nothing absolute.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import quote

import pytest
from bluegrass.core.store import Repository, snapshot

from tests.support.panel import Browser, make_machine, served

# (a name in the segment's folder `docs`, the text inside)
HOSTILE = [
    b"..\\..\\..\\zipslip.txt",
    b"..\\",
    b"\\\\server\\share\\unc.txt",
    b"\\rooted.txt",
    b"C:drive-relative.txt",
    b"C:\\Windows\\absolute.txt",
    b"stream.txt:hidden",
    b"a\\b:c\\..\\d.txt",
]
# Names that hold neither and must come out exactly as they are.
PLAIN = [b"plain.txt", b"caf\xc3\xa9 100% (1).txt", b"CON", b"trailing dot."]
WINDOWS_ABSOLUTE = re.compile(r"^([A-Za-z]:|[/\\])")


@dataclass
class Downloads:
    browser: Browser
    live: Path


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Downloads]:
    tmp = tmp_path_factory.mktemp("archives")
    made = make_machine("reference", tmp)
    root = Path(made.env["BLUEGRASS_PANEL_DATA"])
    live = root / "files" / "alice" / "docs"
    folder = os.fsencode(live / "docs")
    os.makedirs(folder + b"/..\\sub")
    for name in HOSTILE + PLAIN:
        with open(folder + b"/" + name, "wb") as out:
            out.write(b"written from " + name)
    with open(folder + b"/..\\sub/C:inner.txt", "wb") as out:
        out.write(b"nested")
    snapshot(Repository.init(root / "repos" / "alice" / "docs.git"), live)
    with served(made) as base:
        browser = Browser(base)
        assert browser.login().status == 302
        yield Downloads(browser, live)


def check_name(name: str) -> None:
    """A name as Windows reads it stays inside the folder it is extracted into."""
    assert "\\" not in name, name
    assert ":" not in name, name
    assert not WINDOWS_ABSOLUTE.match(name), name
    assert ".." not in PurePosixPath(name).parts, name


def fetch(downloads: Downloads, path: bytes, fmt: str) -> bytes:
    page = downloads.browser.get(
        "/s/alice/docs/archive/" + quote(path, safe="/") + "?format=" + fmt
    )
    assert page.status == 200, page.text[:2000]
    disposition = page.headers["Content-Disposition"]
    assert "\\" not in disposition.split(";")[1], disposition
    return page.body


def extracted_files(into: Path) -> dict[str, bytes]:
    out = {}
    for path in into.rglob("*"):
        resolved = path.resolve()
        assert resolved.is_relative_to(into.resolve()), path
        if path.is_file():
            out[path.relative_to(into).as_posix()] = path.read_bytes()
    return out


@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
@pytest.mark.parametrize("chosen", [b"", b"docs", b"docs/..\\..\\..\\zipslip.txt"])
def test_no_entry_of_a_download_leaves_its_folder_on_windows(
    downloads: Downloads, tmp_path: Path, fmt: str, chosen: bytes
) -> None:
    data = fetch(downloads, chosen, fmt)
    into = tmp_path / "out"
    into.mkdir()
    if fmt == "zip":
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = zf.namelist()
            zf.extractall(into)
    else:
        with tarfile.open(fileobj=io.BytesIO(data)) as tf:
            names = tf.getnames()
            # "data": Python's own refusal of absolute names, `..` and links that leave.
            tf.extractall(into, filter="data")
    assert names
    for name in names:
        check_name(name)
    files = extracted_files(into)
    # Nothing is lost: every file of the choice is there, with its own bytes.
    wanted = [n for n in HOSTILE + PLAIN if chosen in (b"", b"docs") or n == chosen[5:]]
    contents = sorted(files.values())
    for name in wanted:
        assert b"written from " + name in contents, name
    if chosen != b"docs/..\\..\\..\\zipslip.txt":
        assert b"nested" in contents
        # Names without `\\` or `:` come out exactly as they were.
        top = "docs/docs" if chosen == b"" else "docs"
        for name in PLAIN:
            assert files[top + "/" + name.decode()] == b"written from " + name
