"""The reversible name mapping between a user's file names and the names stored in git.

Git itself is the oracle: trees are written object by object (no git porcelain that could
refuse or rewrite a name first) and `git fsck --strict` says which names it rejects. A name
the mapping leaves alone must be one git accepts; an escaped name must always be accepted.
"""

from __future__ import annotations

import hashlib
import random
import re
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from bluegrass.core.store.escaping import escape, escape_path, needs_escape, unescape, unescape_path

from tests.core.conftest import git, git_env, run_git

SEED = 4242
IGNORABLES = [chr(c) for c in (*range(0x200C, 0x2010), *range(0x202A, 0x202F))] + [
    *(chr(c) for c in range(0x206A, 0x2070)),
    "\ufeff",
]
BAD_URL_MODULES = b'[submodule "x"]\n\tpath = x\n\turl = -oProxyCommand=evil\n'
# A blob that trips every content check fsck runs on .gitmodules and .gitattributes.
POISON = BAD_URL_MODULES + b"* text eol=crlf\n" + b"y" * 3000 + b"\n"

SPECIAL = [
    b".git",
    b".GIT",
    b".Git",
    b".gIT",
    b"git~1",
    b"GIT~1",
    b".git.",
    b".git ",
    b".git. ",
    b".git...   ",
    b".git:",
    b".git:stream",
    b".git::$INDEX_ALLOCATION",
    b"git~1.",
    b"git~1:x",
    ".g\u200cit".encode(),
    "\u200c.git".encode(),
    ".git\u200d".encode(),
    ".GI\ufeffT".encode(),
    ".\u206agitmodules".encode(),
    b".gitmodules",
    b".GITMODULES",
    b".gitmodules.",
    b".gitmodules ",
    b".gitmodules:$DATA",
    b"gitmod~1",
    b"GITMOD~4",
    b"gi7eba~1",
    b"gi7eba~9",
    b".gitattributes",
    b".GitAttributes",
    b".gitattributes. ",
    b"gitatt~1",
    b"gi7d29~1",
    b"a\\.git",
    b"a\\b\\.gitmodules",
    b".git\\x",
    b"%%",
    b"%%x",
    b"%%%2Egit",
    b"%%%",
]
ORDINARY = [
    b"100%20.txt",
    b".gitignore",
    b"README.md",
    b".github",
    b".gitkeep",
    b".gitconfig",
    b".mailmap",
    b"git",
    b"gitmodules",
    b".gi",
    b".gitx",
    b".git-credentials",
    b"x.git",
    b"git~",
    b"%2Egit",
    b"%2E%2E",
    b"%",
    b"%2",
    b"50%",
    b"a%%b",
    b"~",
    b"~$lock.docx",
    b"caf\xe9",
    b"new\nline",
    b"-rf",
    b"..." + b"x" * 252,
    "\u200c".encode(),
    "café".encode(),
]


def random_names(count: int, seed: int = SEED) -> list[bytes]:
    """Names of every byte but NUL and '/', half of them built from git's risky pieces."""
    rng = random.Random(seed)
    pieces = [
        b".",
        b"git",
        b"GIT",
        b"Git",
        b"modules",
        b"attributes",
        b"~",
        b"1",
        b"%",
        b"%%",
        b"%2E",
        b" ",
        b"\\",
        b":",
        b"\xe2\x80\x8c",
        b"\xef\xbb\xbf",
        b"\xff",
        b"\xc3\xa9",
        b"gi7eba",
        b"a",
    ]
    alphabet = bytes(b for b in range(1, 256) if b != 0x2F)
    names: set[bytes] = set()
    while len(names) < count:
        if rng.random() < 0.5:
            name = bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 255)))
        else:
            name = b"".join(rng.choice(pieces) for _ in range(rng.randint(1, 8)))
        if name not in (b".", b"..") and len(name) <= 255:
            names.add(name)
    return sorted(names)


# -- the mapping on its own --------------------------------------------------------------


@pytest.mark.parametrize("name", SPECIAL, ids=repr)
def test_special_names_are_escaped_and_come_back(name: bytes) -> None:
    stored = escape(name)
    assert needs_escape(name)
    assert stored.startswith(b"%%")
    # None of the bytes Windows, macOS or git trims or splits on survives unescaped.
    assert not set(stored[2:]) & set(b". ~\\:/\0")
    assert unescape(stored) == name
    assert unescape(escape(stored)) == stored  # escaping an escaped name is reversible too


@pytest.mark.parametrize("name", ORDINARY, ids=repr)
def test_ordinary_names_are_stored_unchanged(name: bytes) -> None:
    assert not needs_escape(name)
    assert escape(name) == name
    assert unescape(name) == name


def test_documented_examples() -> None:
    """docs/repository-format.md tells people to decode these by hand."""
    assert escape(b".git") == b"%%%2Egit"
    assert escape(b".gitmodules") == b"%%%2Egitmodules"
    assert escape(b"git~1") == b"%%git%7E1"
    assert escape(b"100%20.txt") == b"100%20.txt"


def test_random_names_round_trip() -> None:
    names = random_names(4000)
    escaped = [escape(n) for n in names]
    assert [unescape(e) for e in escaped] == names
    # The mapping is one-to-one: no two names share a stored name.
    assert len(set(escaped)) == len(names)
    for stored in escaped:
        assert stored and b"/" not in stored and b"\0" not in stored
        assert stored not in (b".", b"..")


def test_paths_escape_component_by_component() -> None:
    rng = random.Random(SEED + 1)
    names = random_names(600, seed=SEED + 2) + SPECIAL + ORDINARY
    for _ in range(500):
        parts = [rng.choice(names) for _ in range(rng.randint(1, 6))]
        path = b"/".join(parts)
        stored = escape_path(path)
        assert stored.split(b"/") == [escape(p) for p in parts]
        assert unescape_path(stored) == path


@pytest.mark.parametrize("stored", [b"%%%", b"%%%2", b"%%%zz", b"%%%2e", b"%%a%G0"], ids=repr)
def test_malformed_escaped_names_are_refused(stored: bytes) -> None:
    with pytest.raises(ValueError):
        unescape(stored)


# -- git as the oracle -----------------------------------------------------------------


PACK_TYPES = {b"commit": 1, b"tree": 2, b"blob": 3}


class Objects:
    """Writes objects into a bare repository exactly as given, as one pack (no git command
    that could check or refuse a name is involved until fsck)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.objects: dict[bytes, tuple[bytes, bytes]] = {}
        git("init", "--quiet", "--bare", str(path))

    def write(self, kind: bytes, data: bytes) -> bytes:
        digest = hashlib.sha1(kind + b" %d\0" % len(data) + data).digest()
        self.objects[digest] = (kind, data)
        return digest

    def finish(self) -> None:
        """Write the pack (format: git's Documentation/gitformat-pack) and index it."""
        out = bytearray(b"PACK" + struct.pack(">II", 2, len(self.objects)))
        for kind, data in self.objects.values():
            size = len(data)
            byte = (PACK_TYPES[kind] << 4) | (size & 0x0F)
            size >>= 4
            while size:
                out.append(byte | 0x80)
                byte = size & 0x7F
                size >>= 7
            out.append(byte)
            out += zlib.compress(data, 1)
        out += hashlib.sha1(out).digest()
        pack = self.path / "objects" / "pack" / f"pack-{out[-20:].hex()}.pack"
        pack.write_bytes(bytes(out))
        git(f"--git-dir={self.path}", "index-pack", str(pack))

    def tree(self, entries: list[tuple[bytes, bytes, bytes]]) -> bytes:
        """(mode, name, binary id) entries, in git's order (folders sort as 'name/')."""
        ordered = sorted(entries, key=lambda e: e[1] + (b"/" if e[0] == b"40000" else b""))
        return self.write(b"tree", b"".join(m + b" " + n + b"\0" + o for m, n, o in ordered))


KINDS = ("file", "folder", "symlink")


def git_rejects(path: Path, names: list[bytes]) -> set[tuple[bytes, str]]:
    """(name, kind) pairs that `git fsck --strict` rejects as a tree entry.

    Each name is tried as a file holding POISON, as a folder, and as a symlink, each in a tree
    of its own, so every error fsck prints points at exactly one (name, kind).
    """
    objects = Objects(path)
    owner: dict[str, tuple[bytes, str]] = {}
    top = []
    for i, name in enumerate(names):
        for kind in KINDS:
            tag = b"%d %s" % (i, kind.encode())
            if kind == "file":
                obj = objects.write(b"blob", POISON + b"# " + tag + b"\n")
                entry = (b"100644", name, obj)
            elif kind == "folder":
                inner = objects.write(b"blob", b"inside " + tag)
                obj = objects.tree([(b"100644", b"f", inner)])
                entry = (b"40000", name, obj)
            else:
                obj = objects.write(b"blob", b"target-" + tag.replace(b" ", b"-"))
                entry = (b"120000", name, obj)
            holder = objects.tree([entry])
            owner[obj.hex()] = owner[holder.hex()] = (name, kind)
            top.append((b"40000", b"n%05d-%s" % (i, kind.encode()), holder))
    root = objects.tree(top)
    commit = objects.write(
        b"commit",
        b"tree %s\nauthor T <t@t> 0 +0000\ncommitter T <t@t> 0 +0000\n\noracle\n"
        % root.hex().encode(),
    )
    objects.finish()
    git(f"--git-dir={path}", "update-ref", "refs/heads/main", commit.hex())
    done = run_git(f"--git-dir={path}", "fsck", "--strict", "--no-dangling", "--no-progress")
    rejected: set[tuple[bytes, str]] = set()
    for line in done.stderr.decode(errors="replace").splitlines():
        found = re.match(r"error in (?:tree|blob) ([0-9a-f]{40})", line)
        if not found:
            continue
        assert found[1] in owner, f"fsck complains about the oracle itself: {line}"
        rejected.add(owner[found[1]])
    assert bool(rejected) == (done.returncode != 0), done.stderr.decode(errors="replace")
    return rejected


def ntfs_short_names() -> list[bytes]:
    """8.3 short names Windows may give .git, .gitmodules and .gitattributes."""
    names = []
    for prefix in (b"git", b"gitmod", b"gitatt", b"GITMOD", b"GitAtt"):
        for n in (1, 2, 4, 5, 9):
            names.append(prefix + b"~%d" % n)
    # The fall-back forms: a prefix of a hash ("gi7eba" for .gitmodules, "gi7d29" for
    # .gitattributes), a tilde and digits, eight characters in all; the prefix may be empty.
    for stem in (b"gi7eba", b"gi7d29", b"GI7EBA"):
        for cut in range(len(stem), -1, -1):
            digits = 7 - cut
            names.append(stem[:cut] + b"~1" + b"0" * (digits - 1))
            names.append(stem[:cut] + b"~9" + b"8" * (digits - 1))
    return sorted(set(names))


def ntfs_spellings() -> list[bytes]:
    names = []
    for base in (b".git", b".gitmodules", b".gitattributes", b"git~1", b"gitmod~1"):
        for tail in (b".", b" ", b". .", b"  ", b":", b":x", b"::$DATA", b". :x"):
            names.append(base + tail)
        names += [b"a\\" + base, b"x\\y\\" + base]
    return names


def hfs_spellings() -> list[bytes]:
    names = []
    for base in (".git", ".gitmodules", ".gitattributes"):
        for mark in IGNORABLES:
            for at in range(len(base) + 1):
                names.append((base[:at] + mark + base[at:]).encode())
        names += [base.upper().encode(), base.title().encode()]
    return names


def invalid_utf8_tails() -> list[bytes]:
    """A git name followed by bytes that are not UTF-8 (a Latin-1 "é", a cut sequence)."""
    names = []
    for base in (b".git", b".GIT", b".gitmodules", b".gitattributes", b".g\xe2\x80\x8cit"):
        for tail in (b"\xe9", b"\xff", b"\x80", b"\xc3", b"\xe2\x80", b"\xc0\xae"):
            names.append(base + tail)
    return names


FAMILIES = {
    "special": lambda: SPECIAL,
    "ordinary": lambda: ORDINARY,
    "ntfs-short-names": ntfs_short_names,
    "ntfs-spellings": ntfs_spellings,
    "hfs-spellings": hfs_spellings,
    "invalid-utf8-tails": invalid_utf8_tails,
    "random": lambda: random_names(3000, seed=SEED + 3),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_git_accepts_every_stored_name(tmp_path: Path, family: str) -> None:
    """Whatever the user's name, the name the store gives git passes fsck --strict."""
    names = FAMILIES[family]()
    rejected = git_rejects(tmp_path / "oracle.git", [escape(n) for n in names])
    assert not rejected, "git rejects stored names: " + ", ".join(
        f"{n!r} as {k} (user name {unescape(n)!r})" for n, k in sorted(rejected)[:20]
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_every_name_git_rejects_is_escaped(tmp_path: Path, family: str) -> None:
    """The other side of the same promise: no name git rejects is stored as it is."""
    names = FAMILIES[family]()
    missed = sorted(
        {n for n, _ in git_rejects(tmp_path / "oracle.git", names) if not needs_escape(n)}
    )
    assert not missed, f"{len(missed)} names git rejects are not escaped: {missed[:20]!r}"


def test_oracle_rejects_unescaped_git_names(tmp_path: Path) -> None:
    """The oracle can fail: the raw names are refused, each for what it is."""
    dotgit = b".GIT"
    hfs = ".g\u200cit".encode()
    modules = b".gitmodules"
    rejected = git_rejects(tmp_path / "oracle.git", [dotgit, hfs, modules, b"README.md"])
    assert {(dotgit, k) for k in KINDS} <= rejected
    assert {(hfs, k) for k in KINDS} <= rejected
    assert (modules, "file") in rejected  # its url; as a folder or a link, for being one
    assert not {(b"README.md", k) for k in KINDS} & rejected


def index_ignores(path: Path, names: list[bytes]) -> set[tuple[bytes, str]]:
    """(name, kind) pairs that `git update-index --index-info` (what the store feeds its
    trees through) drops: it says "Ignoring path" and still exits 0."""
    git("init", "--quiet", "--bare", str(path))
    blob = git(f"--git-dir={path}", "hash-object", "-w", "--stdin", input=b"x").strip()
    paths: dict[bytes, tuple[bytes, str]] = {}
    records = []
    for i, name in enumerate(names):
        for kind, mode, rel in (
            ("file", b"100644", b"f%05d/%s" % (i, name)),
            ("symlink", b"120000", b"l%05d/%s" % (i, name)),
            ("folder", b"100644", b"d%05d/%s/inside" % (i, name)),
        ):
            paths[rel] = (name, kind)
            records.append(b"%s %s\t%s\0" % (mode, blob, rel))
    index = path / "test-index"
    proc = subprocess.run(
        ["git", f"--git-dir={path}", "update-index", "--add", "-z", "--index-info"],
        input=b"".join(records),
        capture_output=True,
        env=git_env({"GIT_INDEX_FILE": str(index)}),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    listed = subprocess.run(
        ["git", f"--git-dir={path}", "ls-files", "-z"],
        capture_output=True,
        env=git_env({"GIT_INDEX_FILE": str(index)}),
        check=True,
    ).stdout.split(b"\0")
    return {owner for rel, owner in paths.items() if rel not in listed}


@pytest.mark.parametrize("family", FAMILIES)
def test_update_index_keeps_every_stored_name(tmp_path: Path, family: str) -> None:
    names = [escape(n) for n in FAMILIES[family]()]
    dropped = index_ignores(tmp_path / "index.git", names)
    assert not dropped, f"update-index drops stored names: {sorted(dropped)[:20]!r}"


def test_update_index_drops_raw_git_names(tmp_path: Path) -> None:
    """The control: git's own path check refuses these (so the escaping is what saves them)."""
    dropped = index_ignores(tmp_path / "index.git", [b".GIT", b"~1000000", b"README.md"])
    assert {(b".GIT", k) for k in KINDS} <= dropped
    assert (b"~1000000", "symlink") in dropped
    assert not {(b"README.md", k) for k in KINDS} & dropped
