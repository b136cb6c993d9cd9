"""Snapshot and restore a corpus of hard cases, byte for byte, and leave the source untouched.

One module-wide run builds the corpus, takes one snapshot and restores it; each test then
checks one promise of docs/design.md D5 (byte-exact) against that run.
"""

from __future__ import annotations

import io
import os
import random
import stat
import tarfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pytest
from bluegrass.core.store import Repository, SnapshotResult, restore, snapshot
from bluegrass.core.store.escaping import escape_path

from tests.core.conftest import (
    CheckRepo,
    FullPrint,
    Print,
    assert_same_tree,
    fingerprint,
    full_fingerprint,
    git,
    restore_leftovers,
)

SEED = 20261127
MIB = 1 << 20
SIZES = [0, 1, 2, 4095, 4096, 4097, 65537, 1_000_003, 5 * MIB + 7]
FILE_MODES = [0o600, 0o640, 0o700, 0o755, 0o444, 0o4755, 0o2711, 0o010, 0o000]
MTIMES = {
    b"epoch": 0,
    b"one-ns": 1,
    b"before-1970": -1_000_000_001,
    b"y2001": 1_000_000_000_123_456_789,
    b"odd-ns": 1_700_000_000_000_000_001,
    b"y2038-after": 2_147_483_648_000_000_007,
    b"future-2100": 4_102_444_800_999_999_999,
}
LONG_ASCII = b"L" * 255
LONG_UTF8 = ("é" * 127).encode()  # 254 bytes, 127 characters
NFC = unicodedata.normalize("NFC", "café-ü.txt").encode()
NFD = unicodedata.normalize("NFD", "café-ü.txt").encode()
DEPTH = 100
MALICIOUS_GITMODULES = b'[submodule "evil"]\n\tpath = evil\n\turl = -oProxyCommand=evil\n'
LONG_LINE_ATTRIBUTES = b"* text eol=crlf\n" + b"#" + b"x" * 3000 + b" text\n"
# Names that git refuses or whose content fsck parses; stored escaped, restored as they were.
GIT_NAMES = [
    b".git",
    b".GIT",
    b".Git",
    b"git~1",
    b"GIT~1",
    b".git.",
    b".git ",
    b".git. . ",
    b".git::$INDEX_ALLOCATION",
    ".g\u200cit".encode(),
    ".\u200dGi\ufefft".encode(),
    b".gitmodules",
    b".GITMODULES",
    b".gitmodules.",
    b"gitmod~1",
    b"gi7eba~1",
    b".gitattributes",
    b".gitattributes ",
    b"gitatt~1",
    b"gi7d29~1",
    b"foo\\.git",
    b"~1000000",  # NTFS fall-back short name of .gitmodules with an empty prefix
    b"~1234567",
    b"~9999999. ",
    b".git\xe9",  # git's HFS check stops at invalid UTF-8: ".git" to it
    b".GIT\x80tail",
    b".gitmodules\xff",
]
# Names that need no escaping, however odd.
ODD_NAMES = [
    b"caf\xe9",
    b"\xff\xfe not utf-8",
    b"new\nline",
    b"tab\there",
    b"back\\slash",
    b"-rf",
    b"--help",
    b"%%already-escaped-looking",
    b"%%%2Egit",
    b"%2Egit",
    b"%2E%2E",
    b"100%20.txt",
    b"%",
    b"%%",
    b"a:b",
    b"x~1",
    b" leading space",
    b"trailing space ",
    b"trailing dot.",
    b"\x01ctrl\x7f",
    b'quote"and*star?',
    b".gitignore",
    b".gitkeep",
    b".github",
    b"git",
    "emoji-\U0001f600".encode(),
    LONG_ASCII,
    LONG_UTF8,
    NFC,
    NFD,
    b"Foo.txt",
    b"foo.txt",
    b"FOO.TXT",
]


@dataclass
class CorpusRun:
    base: Path
    src: Path
    repo: Repository
    result: SnapshotResult
    before: dict[bytes, FullPrint]
    after: dict[bytes, FullPrint]
    expected: dict[bytes, Print]  # the source minus what cannot be backed up
    skipped: dict[str, str]
    restored: Path


def _write(path: bytes, data: bytes, mode: int | None = None) -> None:
    with open(path, "wb") as out:
        out.write(data)
    if mode is not None:
        os.chmod(path, mode)


def build_corpus(root: Path, outside: Path) -> dict[str, str]:
    """Fill `root` with the hard cases; return the entries a snapshot must skip, with why."""
    rng = random.Random(SEED)
    r = os.fsencode(root)

    def p(rel: bytes) -> bytes:
        return r + b"/" + rel

    def mkdir(rel: bytes) -> bytes:
        os.makedirs(p(rel), exist_ok=True)
        return p(rel)

    # Contents of every size, random bytes (no text conversion could go unnoticed).
    mkdir(b"data")
    for size in SIZES:
        _write(p(b"data/random-%d.bin" % size), rng.randbytes(size))
    _write(p(b"data/all-bytes"), bytes(range(256)) * 16)
    # A hard-linked pair: both names come back with the content; the link between them is
    # not kept (a restore writes two independent files).
    _write(p(b"data/hard-1"), rng.randbytes(3000))
    os.link(p(b"data/hard-1"), p(b"data/hard-2"))

    # Permission bits of files and folders.
    mkdir(b"modes")
    for mode in FILE_MODES:
        _write(p(b"modes/file-%04o" % mode), b"mode %o\n" % mode, mode)
    dir_modes = {
        b"modes/setgid-dir": 0o2775,
        b"modes/sticky-dir": 0o1777,
        b"modes/private-dir": 0o700,
        b"modes/readonly-dir": 0o555,
        b"modes/readonly-dir/inner": 0o500,
        b"modes/no-access-dir": 0o000,
    }
    for rel in dir_modes:
        mkdir(rel + b"/inner")
        _write(p(rel + b"/file"), rng.randbytes(100), 0o644)
        _write(p(rel + b"/inner/file"), rng.randbytes(10), 0o600)
    # A read-only folder holding files (and a read-only file in it).
    _write(p(b"modes/readonly-dir/ro-file"), b"read only\n", 0o444)

    # mtimes with nanoseconds, old and future, on files, links and folders.
    mkdir(b"times/dir")
    for name, ns in MTIMES.items():
        _write(p(b"times/" + name), name + b"\n")
        os.utime(p(b"times/" + name), ns=(ns, ns))
        os.symlink(name, p(b"times/link-" + name))
        os.utime(p(b"times/link-" + name), ns=(ns, ns), follow_symlinks=False)

    # Symlinks of every sort, kept as links.
    mkdir(b"links")
    targets = {
        b"relative": b"../data/random-4096.bin",
        b"absolute": b"/etc/hostname",
        b"absolute-missing": b"/no/such/place/at/all",
        b"dangling": b"no/such/file",
        b"to-dir": b"../data",
        b"loop-a": b"loop-b",
        b"loop-b": b"loop-a",
        b"self": b"self",
        b"odd-target": b"caf\xe9\nline\ttab\\ %%%2Egit",
        b"long-target": b"x/" * 1000 + b"end",
        b".gitignore": b"../data/random-1.bin",
        b".mailmap": b"../data/random-2.bin",
        b".gitmodules": b"../data/random-0.bin",
        b".gitattributes": b"../data/random-1.bin",
    }
    for name, target in targets.items():
        os.symlink(target, p(b"links/" + name))

    # Empty folders, nested too.
    mkdir(b"empty")
    mkdir(b"nested-empty/a/b/c")

    # A real git repository inside the tree: its .git is data, and comes back usable. Its
    # config would run a command if anything ran git inside the tree.
    proj = root / "proj"
    proj.mkdir()
    git("init", "--quiet", "--initial-branch=main", str(proj))
    (proj / "hello.txt").write_bytes(b"hello from a nested repository\n")
    (proj / "sub").mkdir()
    (proj / "sub" / "data.bin").write_bytes(rng.randbytes(5000))
    git("-C", str(proj), "add", "--all")
    git("-C", str(proj), "commit", "--quiet", "-m", "nested commit")
    for config in (proj / ".git" / "config", root / ".git" / "config"):
        config.parent.mkdir(exist_ok=True)
        with config.open("a") as out:
            out.write(f"[core]\n\tfsmonitor = touch {outside / 'PWNED'}\n")
    # A folder named .git that is no repository (here at the segment's root), and a .git
    # FILE of the kind a worktree or submodule has.
    (root / ".git" / "description").write_bytes(b"not a repository\n")
    mkdir(b"worktree")
    _write(p(b"worktree/.git"), b"gitdir: ../proj/.git\n")
    _write(p(b"worktree/file.txt"), b"in a worktree\n")

    # Names git itself treats specially, at the root, in a folder, as files, folders, links.
    _write(p(b".gitmodules"), MALICIOUS_GITMODULES)
    _write(p(b".gitattributes"), LONG_LINE_ATTRIBUTES)
    _write(p(b".gitignore"), b"*\n")
    mkdir(b"names")
    for i, name in enumerate(GIT_NAMES):
        if name == b".git":
            continue  # the root and proj/ have one already; names/ gets a folder below
        if i % 3 == 0:
            mkdir(b"names/" + name)
            _write(p(b"names/" + name + b"/inside"), MALICIOUS_GITMODULES)
        elif i % 3 == 1:
            _write(p(b"names/" + name), MALICIOUS_GITMODULES + LONG_LINE_ATTRIBUTES)
        else:
            os.symlink(b"../data/random-1.bin", p(b"names/" + name))
    mkdir(b"names/.git/objects")
    _write(p(b"names/.git/HEAD"), b"ref: refs/heads/main\n")
    for i, name in enumerate(ODD_NAMES):
        _write(p(b"names/" + name), b"%d " % i + name + b"\n")
    mkdir(b"names/dir-" + b"caf\xe9" + b"/%%sub")
    _write(p(b"names/dir-caf\xe9/%%sub/.gitmodules"), MALICIOUS_GITMODULES)

    # Attributes that would rewrite content if git honoured them.
    mkdir(b"attrs/lfs")
    _write(p(b"attrs/.gitattributes"), b"* text eol=crlf\n*.bin filter=lfs diff=lfs -text\n")
    _write(p(b"attrs/.gitignore"), b"*\n!nothing\n")
    _write(p(b"attrs/unix.txt"), b"line one\nline two\n")
    _write(p(b"attrs/dos.txt"), b"line one\r\nline two\r\n")
    _write(p(b"attrs/mixed.txt"), b"a\r\nb\nc\rd")
    _write(p(b"attrs/lfs/.gitattributes"), b"*.bin filter=lfs diff=lfs merge=lfs -text\n")
    _write(
        p(b"attrs/lfs/pointer.bin"),
        b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"0" * 64 + b"\nsize 12345\n",
    )
    _write(p(b"attrs/lfs/real.bin"), rng.randbytes(2000))
    _write(p(b"attrs/ident.txt"), b"$Id$\n$Format:%H$\n")

    # Deep nesting, with a file and an empty folder at the bottom.
    deep = b"deep/" + b"/".join(b"level-%03d" % i for i in range(DEPTH))
    mkdir(deep + b"/empty-at-the-bottom")
    _write(p(deep + b"/leaf.txt"), b"at the bottom\n")

    # What cannot be backed up: reported, skipped, and the snapshot still commits.
    mkdir(b"special")
    skipped = {"special/fifo": "FIFO", "special/socket": "socket"}
    os.mkfifo(p(b"special/fifo"))
    os.mknod(p(b"special/socket"), stat.S_IFSOCK | 0o600)
    try:
        os.mknod(p(b"special/null-device"), stat.S_IFCHR | 0o600, os.makedev(1, 3))
        skipped["special/null-device"] = "character device"
    except PermissionError:
        pass  # no CAP_MKNOD here: FIFO and socket still cover the skipping
    _write(p(b"special/regular"), b"next to the specials\n")

    # Folder mtimes last, deepest first (creating entries moves them), then read-only bits.
    for i, rel in enumerate(sorted(_folders(r), key=len, reverse=True)):
        ns = 1_234_567_890_000_000_000 + i * 1_000_000_007
        os.utime(r if rel == b"." else p(rel), ns=(ns, ns))
    for rel, mode in dir_modes.items():
        os.chmod(p(rel), mode)  # chmod moves no mtime
    return skipped


def _folders(root: bytes) -> list[bytes]:
    """Every folder under root (root as b"."), symlinks to folders left out."""
    found = [b"."]
    for current, dirnames, _files in os.walk(root):
        for name in dirnames:
            full = os.path.join(current, name)
            if not os.path.islink(full):
                found.append(os.path.relpath(full, root))
    return found


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> CorpusRun:
    base = tmp_path_factory.mktemp("corpus")
    src = base / "src"
    src.mkdir()
    skipped = build_corpus(src, base)
    os.chmod(src, 0o750)
    before = full_fingerprint(src)
    repo = Repository.init(base / "repo.git")
    result = snapshot(repo, src)
    after = full_fingerprint(src)
    restored = base / "restored"
    restore(repo, restored)
    expected = fingerprint(src)
    for path in skipped:
        del expected[os.fsencode(path)]
    return CorpusRun(base, src, repo, result, before, after, expected, skipped, restored)


def test_snapshot_commits_and_reports_what_it_skipped(run: CorpusRun) -> None:
    assert run.result.committed
    assert run.result.commit == run.repo.log()[0].commit
    assert dict(run.result.skipped) == run.skipped
    assert run.result.unreadable == []
    assert run.repo.log()[0].stats["skipped"] == len(run.skipped)


def test_restore_is_byte_exact(run: CorpusRun) -> None:
    """Every byte, permission bit, link target and nanosecond mtime, folders included."""
    assert_same_tree(run.expected, fingerprint(run.restored))


def test_source_is_untouched(run: CorpusRun) -> None:
    """Nothing written, created or even chmod-ed in the source: ctime and inodes included."""
    assert_same_tree(run.before, run.after)
    assert_same_tree(run.before, full_fingerprint(run.src))


def test_no_command_from_the_tree_ran(run: CorpusRun) -> None:
    # Both .git/config files in the corpus would create this through core.fsmonitor.
    assert not (run.base / "PWNED").exists()


def test_repository_passes_fsck_and_a_checking_mirror(
    run: CorpusRun, check_repo: CheckRepo
) -> None:
    check_repo(run.repo)


def test_special_names_are_stored_escaped(run: CorpusRun) -> None:
    """The documented escaped forms (docs/repository-format.md) are what git holds."""
    listing = git(
        f"--git-dir={run.repo.path}", "ls-tree", "-r", "-z", "--name-only", "main", "files"
    ).split(b"\0")
    assert b"files/%%%2Egit/config" in listing
    assert b"files/%%%2Egitmodules" in listing
    assert b"files/%%%2Egitattributes" in listing
    assert b"files/.gitignore" in listing
    assert b"files/proj/%%%2Egit/HEAD" in listing
    assert b"files/names/100%20.txt" in listing
    assert b"files/names/%%%25%25already-escaped-looking" in listing
    for path in listing:
        for part in path.split(b"/"):
            assert part.lower().rstrip(b". ") not in (b".git", b".gitmodules", b"git~1"), path


def test_nested_repository_works_after_restore(run: CorpusRun, tmp_path: Path) -> None:
    proj = run.restored / "proj"
    quiet = ["-c", "core.fsmonitor=false", "--no-pager"]
    log = git("-C", str(proj), *quiet, "log", "--format=%s")
    assert log == b"nested commit\n"
    assert git("-C", str(proj), *quiet, "status", "--porcelain") == b""
    assert git("-C", str(proj), *quiet, "show", "HEAD:hello.txt") == (
        b"hello from a nested repository\n"
    )
    # The same through a restore of just that folder.
    alone = tmp_path / "proj-alone"
    restore(run.repo, alone, path="proj")
    assert git("-C", str(alone), *quiet, "log", "--format=%s") == b"nested commit\n"
    assert_same_tree(fingerprint(run.src / "proj"), fingerprint(alone))
    assert not (run.base / "PWNED").exists()


def test_hard_links_come_back_as_two_files(run: CorpusRun) -> None:
    # The link relation itself is not kept: the two names are independent files after a
    # restore, each with the full content (checked by test_restore_is_byte_exact too).
    one = run.restored / "data" / "hard-1"
    two = run.restored / "data" / "hard-2"
    assert one.read_bytes() == two.read_bytes() == (run.src / "data" / "hard-1").read_bytes()


@pytest.mark.parametrize(
    "path",
    [
        ".git",
        "names/.gitmodules",
        os.fsdecode(b"names/caf\xe9"),
        os.fsdecode(b"names/new\nline"),
        os.fsdecode(b"names/dir-caf\xe9/%%sub"),
        "modes/readonly-dir",
        "links/loop-a",
        "deep/level-000/level-001",
    ],
)
def test_restore_one_path(run: CorpusRun, tmp_path: Path, path: str) -> None:
    """A folder becomes the target itself; a file or link lands inside the target."""
    target = tmp_path / "target"
    restore(run.repo, target, path=path)
    source = run.src / path
    if source.is_dir() and not source.is_symlink():
        assert_same_tree(fingerprint(source), fingerprint(target))
    else:
        name = os.fsencode(source.name)
        assert os.listdir(target) == [os.fsdecode(name)]
        assert fingerprint(target / source.name)[b"."] == fingerprint(source)[b"."]
    assert restore_leftovers(tmp_path) == []


def test_plain_git_gives_back_the_bytes(run: CorpusRun) -> None:
    """docs/repository-format.md: without Bluegrass, `git archive` of `files` gives every
    file's bytes, the executable bit and symlinks, under the stored (escaped) names."""
    archive = git(f"--git-dir={run.repo.path}", "archive", "--format=tar", "main:files")
    manifest = run.repo.manifest(run.result.commit or "")
    stored = {}
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar:
            if member.isfile():
                handle = tar.extractfile(member)
                assert handle is not None
                stored[os.fsencode(member.name)] = ("f", member.mode & 0o100, handle.read())
            elif member.issym():
                stored[os.fsencode(member.name)] = ("l", 0, os.fsencode(member.linkname))
    expected = {}
    for path, entry in manifest.items():
        real = os.fsencode(run.src) + b"/" + path
        if entry.kind == "f":
            with open(real, "rb") as handle:
                expected[escape_path(path)] = ("f", entry.mode & 0o100, handle.read())
        elif entry.kind == "l":
            expected[escape_path(path)] = ("l", 0, os.readlink(real))
    assert stored.keys() == expected.keys()
    differ = sorted(p for p in expected if stored[p] != expected[p])
    assert not differ, differ[:10]
