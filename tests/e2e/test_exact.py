"""End to end: every entry a laptop has reaches every copy exactly (issue 11, decision 59).

A tree like the store's corpus (modes 755/700/600/444/640, absolute, relative, dangling and
folder symlinks, nanosecond mtimes, a year-2200 mtime, empty folders, odd names, a nested
.git folder) goes from laptop A through the real cloud (`bluegrass-cloud run`: rclone serve
sftp, which keeps no permission bits and only 32-bit whole seconds) into a snapshot, a
`restore` from it, the Pi's latest files (the real `bluegrass-appliance files` against the
cloud; a folder stands in for the Pi's drive) and a second laptop that joins. Each copy is
compared with laptop A's folder entry for entry: kind, permission bits, mtime to the
nanosecond, size, bytes or link target. Then a change of bits alone on the second laptop
reaches the first and the next snapshot.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.appliance.conftest import Appliance
from tests.e2e.conftest import SEGMENT, USER, Cloud, Laptops

pytestmark = pytest.mark.slow

CHECK = ".bluegrass-check"
BASE_NS = 1_600_000_000_123_456_789
YEAR_2200_NS = 7_258_118_400_987_654_321  # beyond sftp's 32-bit seconds (2106)

Entries = dict[str, tuple[str, int, int, int, str]]


def entries(root: Path) -> Entries:
    """Every entry under root, without following links: kind, permission bits, mtime (ns),
    size, and the bytes' SHA-256 or the link's target. Not the check file, and not the root
    itself: each computer's segment folder is its own (decision 59)."""
    found: Entries = {}
    pending = [root]
    while pending:
        folder = pending.pop()
        for path in sorted(folder.iterdir()):
            rel = path.relative_to(root).as_posix()
            if rel == CHECK:
                continue
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                found[rel] = ("l", 0, st.st_mtime_ns, st.st_size, os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                found[rel] = ("d", stat.S_IMODE(st.st_mode), st.st_mtime_ns, 0, "")
                pending.append(path)
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                found[rel] = ("f", stat.S_IMODE(st.st_mode), st.st_mtime_ns, st.st_size, digest)
    return found


def build_corpus(docs: Path) -> None:
    files = {
        "run.sh": (b"#!/bin/sh\necho hello\n", 0o755),
        "private/secret.txt": (b"only mine\n", 0o600),
        "private/deeper/key.pem": (b"-----BEGIN KEY-----\n", 0o600),
        "readonly.txt": (b"do not edit\n", 0o444),
        "group.txt": (b"for the group\n", 0o640),
        "odd name with spaces & \u00fc.txt": (b"odd\n", 0o644),
        "100%20.txt": (b"percent\n", 0o644),
        "%%leading.txt": (b"escaped in the store\n", 0o644),
        "project/.git/config": (b"[core]\n\tbare = false\n", 0o644),
        "project/.gitignore": (b"*\n", 0o644),
        "future.txt": (b"from the year 2200\n", 0o644),
    }
    for rel, (data, _) in files.items():
        path = docs / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    bad = os.fsencode(docs) + b"/not-utf8-\xff.txt"  # a name that is not UTF-8, kept byte-exact
    with open(bad, "wb") as handle:
        handle.write(b"latin-1 name\n")
    os.chmod(bad, 0o600)
    os.utime(bad, ns=(BASE_NS + 777, BASE_NS + 777))
    (docs / "empty").mkdir()
    (docs / "empty-private").mkdir(mode=0o700)
    (docs / "link-rel").symlink_to("run.sh")
    (docs / "link-abs").symlink_to("/etc/hostname")
    (docs / "link-dangling").symlink_to("does/not/exist")
    (docs / "link-dir").symlink_to("private")
    for i, (rel, (_, mode)) in enumerate(sorted(files.items())):
        (docs / rel).chmod(mode)
        when = YEAR_2200_NS if rel == "future.txt" else BASE_NS + i * 1_000_003
        os.utime(docs / rel, ns=(when, when))
    for i, name in enumerate(("link-abs", "link-dangling", "link-dir", "link-rel")):
        when = BASE_NS + 500_000_017 + i * 7
        os.utime(docs / name, ns=(when, when), follow_symlinks=False)
    (docs / "private").chmod(0o700)
    (docs / "private" / "deeper").chmod(0o750)
    folders = ["private/deeper", "private", "project/.git", "project", "empty", "empty-private"]
    for i, rel in enumerate(folders):  # deepest first: setting a time moves no parent's
        when = BASE_NS + 900_000_000 + i * 11
        os.utime(docs / rel, ns=(when, when))


def manifest_entries(cloud: Cloud, commit: str) -> dict[str, tuple[str, int, int, int]]:
    repo = cloud.data / "repos" / USER / f"{SEGMENT}.git"
    raw = subprocess.run(
        ["git", "--git-dir", str(repo), "show", f"{commit}:bluegrass-manifest"],
        capture_output=True,
        check=True,
    ).stdout
    out = {}
    for record in raw.split(b"\0")[1:-1]:
        fields, path = record.split(b"\t", 1)
        kind, mode, mtime, size, _oid = fields.split(b" ")
        out[os.fsdecode(path)] = (kind.decode(), int(mode, 8), int(mtime), int(size))
    return out


def test_every_entry_reaches_every_copy_exactly(
    cloud: Cloud, laptops: Laptops, tmp_path: Path
) -> None:
    a, b, docs_a, docs_b = laptops.a, laptops.b, laptops.docs_a, laptops.docs_b
    build_corpus(docs_a)
    before = entries(docs_a)

    synced = a.run("sync", "--json", check=False)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    original = entries(docs_a)
    assert original == before  # A's own sync changed nothing of A's
    # What the cloud's disk has is what sftp could keep: no bits, 32-bit seconds, link files.
    cloud_future = (cloud.tree / "future.txt").stat().st_mtime_ns
    assert cloud_future != YEAR_2200_NS and cloud_future % 1_000_000_000 == 0
    assert (cloud.tree / "link-abs.rclonelink").read_text() == "/etc/hostname"

    # 1. The snapshot records each entry as laptop A had it; no sync machinery in it.
    result = cloud.commit()
    assert result["committed"], result
    stored = manifest_entries(cloud, result["commit"])
    assert set(stored) == {".", *original}, set(stored) ^ {".", *original}
    for rel, (kind, mode, mtime, size, _) in original.items():
        got = stored[rel]
        assert (got[0], got[2], got[3]) == (kind, mtime, size), rel
        if kind != "l":
            assert got[1] == mode, (rel, oct(got[1]), oct(mode))

    # 2. A restore from that snapshot gives laptop A's folder back, entry for entry.
    restored = tmp_path / "restored"
    cloud.restore(restored, at=result["commit"])
    assert entries(restored) == original

    # 3. The Pi's latest files: pulled over sftp, then given the devices' bits and times.
    pi = json.loads(cloud.cli("device", "add", USER, "--name", "pi", "--json").stdout)
    appliance = Appliance(tmp_path / "pi-state")
    appliance("enroll", pi["enrollment_code"])
    appliance.global_args = ["--drive-dir", str(tmp_path / "drive")]
    pulled = appliance.json("files")
    assert pulled["outcome"] == "ok", pulled
    pi_files = tmp_path / "drive" / "bluegrass" / USER / SEGMENT
    assert entries(pi_files) == original

    # 4. A second, new laptop joins: its folder becomes laptop A's, entry for entry.
    joined = b.run("sync", "--json", check=False)
    assert joined.returncode == 0, joined.stdout + joined.stderr
    assert entries(docs_b) == original
    assert not (docs_b / ".bluegrass-meta").exists()  # the sidecars never enter a folder

    # 5. Bits changed on B alone (no byte changes: bisync moves nothing) reach A and history.
    (docs_b / "run.sh").chmod(0o700)
    (docs_b / "group.txt").chmod(0o600)
    assert b.run("sync", check=False).returncode == 0
    assert a.run("sync", check=False).returncode == 0
    assert stat.S_IMODE((docs_a / "run.sh").stat().st_mode) == 0o700
    assert stat.S_IMODE((docs_a / "group.txt").stat().st_mode) == 0o600
    again = cloud.commit()
    assert again["committed"], again
    modes = manifest_entries(cloud, again["commit"])
    assert (modes["run.sh"][1], modes["group.txt"][1]) == (0o700, 0o600)
    # ...and A's next sync does not undo them with its older record.
    assert a.run("sync", check=False).returncode == 0
    assert b.run("sync", check=False).returncode == 0
    assert stat.S_IMODE((docs_b / "run.sh").stat().st_mode) == 0o700
