"""Benchmark data: prepared once into the work dir's cache, then hardlink-copied per run.

The cache is never modified after it is complete. Runs work on `cp -al` copies: new
directories, but every file a hard link to the cached one, so a 1.5 GB tree is "copied" in a
second or two without using space. A hard link shares its inode, so writing into a linked file
would change the cache too; `modify_every_nth` therefore writes each changed file as a new
file and renames it over the link, which leaves the cached inode alone.
"""

from __future__ import annotations

import os
import random
import shutil
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

LINUX_PACKAGE = "linux-source-6.1"
LINUX_TARBALL = Path(f"/usr/src/{LINUX_PACKAGE}.tar.xz")
CHUNK = 16 * 1024 * 1024
# Appended to each file of the "1% changed" step; fixed so every tool sees identical input.
CHANGE_SUFFIX = b"\n/* bluegrass-bench: changed */\n"

Log = Callable[[str], None]


class DataError(RuntimeError):
    """Data cannot be prepared; the message is one line that says what to do."""


@dataclass(frozen=True)
class TreeStats:
    files: int  # regular files
    symlinks: int
    dirs: int
    bytes: int  # size of the regular files

    @property
    def entries(self) -> int:
        """What a snapshot stores as files: regular files and symlinks."""
        return self.files + self.symlinks


def _complete(folder: Path, stamp: str) -> bool:
    marker = folder.parent / f"{folder.name}.complete"
    return folder.exists() and marker.is_file() and marker.read_text() == stamp


def _mark_complete(folder: Path, stamp: str) -> None:
    (folder.parent / f"{folder.name}.complete").write_text(stamp)


def _start_fresh(folder: Path) -> Path:
    """A temporary sibling to build into; renamed into place only once complete, so an
    interrupted preparation is redone rather than trusted."""
    marker = folder.parent / f"{folder.name}.complete"
    marker.unlink(missing_ok=True)
    for old in (folder, folder.parent / f"{folder.name}.partial"):
        if old.exists():
            shutil.rmtree(old)
    tmp = folder.parent / f"{folder.name}.partial"
    tmp.mkdir(parents=True)
    return tmp


def linux_tree(cache: Path, log: Log) -> Path:
    """The extracted Linux source tree (Debian's linux-source-6.1), extracted once."""
    if not LINUX_TARBALL.is_file():
        raise DataError(
            f"{LINUX_TARBALL} is missing: install it with `apt-get install {LINUX_PACKAGE}` "
            "(or run with --quick)"
        )
    st = LINUX_TARBALL.stat()
    stamp = f"{LINUX_TARBALL} {st.st_size} {st.st_mtime_ns}\n"
    folder = cache / LINUX_PACKAGE
    if _complete(folder, stamp):
        return folder
    log(f"extracting {LINUX_TARBALL} into {folder} (once; about a minute)")
    tmp = _start_fresh(folder)
    # xz on all cores; tar keeps the tarball's mtimes and modes, so every run sees the same
    # metadata.
    subprocess.run(
        ["tar", "-x", "-I", "xz -T0", "-f", str(LINUX_TARBALL), "-C", str(tmp)],
        check=True,
    )
    inner = tmp / LINUX_PACKAGE
    if not inner.is_dir():
        raise DataError(f"{LINUX_TARBALL} did not contain {LINUX_PACKAGE}/")
    inner.rename(folder)
    tmp.rmdir()
    _mark_complete(folder, stamp)
    return folder


def _write_random(path: Path, size: int) -> None:
    # os.urandom: incompressible and undeduplicable, like photos and video; only the size
    # needs to be deterministic for the comparisons to hold.
    with path.open("wb") as f:
        left = size
        while left:
            n = min(CHUNK, left)
            f.write(os.urandom(n))
            left -= n


def media_files(cache: Path, sizes: dict[str, int], log: Log, name: str = "media") -> Path:
    """A folder of random files, named and sized by `sizes`, generated once."""
    folder = cache / name
    stamp = "".join(f"{n} {s}\n" for n, s in sorted(sizes.items()))
    if _complete(folder, stamp):
        return folder
    log(f"generating {len(sizes)} random file(s), {sum(sizes.values()) / 1e6:.0f} MB, in {folder}")
    tmp = _start_fresh(folder)
    for file_name, size in sorted(sizes.items()):
        _write_random(tmp / file_name, size)
    tmp.rename(folder)
    _mark_complete(folder, stamp)
    return folder


_WORDS = (
    "the of and to in is that for it as with was on be by this are or from at which not have "
    "an but all were when there can been one if more no out so what up said about other into "
    "than its time only could new them man some these then two first may any like now my such "
    "make over our even most me state after also made many did must before back see through "
    "struct int return static void const unsigned long char if else while for break case"
).split()


def quick_tree(cache: Path, log: Log, files: int = 2000, seed: int = 20261127) -> Path:
    """A small deterministic tree for --quick: mostly compressible text, some binary, a
    symlink, and a root .gitignore that ignores everything, as the kernel tarball has."""
    folder = cache / f"quick-tree-{files}"
    stamp = f"quick tree v1 files={files} seed={seed}\n"
    if _complete(folder, stamp):
        return folder
    log(f"generating a {files}-file tree in {folder}")
    tmp = _start_fresh(folder)
    rng = random.Random(seed)
    dirs = [Path(".")]
    for i in range(60):
        parent = rng.choice(dirs)
        dirs.append(parent / f"dir{i:02d}")
    for d in dirs:
        (tmp / d).mkdir(parents=True, exist_ok=True)
    (tmp / ".gitignore").write_text("*\n")
    written = 1
    while written < files - 1:
        d = rng.choice(dirs)
        if rng.random() < 0.1:
            data = rng.randbytes(rng.randint(64, 64 * 1024))
            name = f"blob{written:05d}.bin"
        else:
            count = int(rng.paretovariate(1.2) * 40)
            text = " ".join(rng.choice(_WORDS) for _ in range(min(count, 20000)))
            data = (text + "\n").encode()
            name = f"file{written:05d}.c"
        (tmp / d / name).write_bytes(data)
        written += 1
    (tmp / "link-to-first").symlink_to("dir00")
    # Fixed mtimes, as an extracted tarball has: runs differ only in ctimes and inodes.
    fixed = 1_700_000_000_000_000_000
    for path, _ in _walk(tmp):
        os.utime(path, ns=(fixed, fixed), follow_symlinks=False)
    tmp.rename(folder)
    _mark_complete(folder, stamp)
    return folder


def linux_subset(cache: Path, files: int, log: Log) -> Path:
    """`files` entries of the Linux tree, every k-th in bytewise path order (so every part of
    the tree and every size of file is represented), hard-linked into a tree of their own.

    Regular files and symlinks are both entries; symlinks are recreated, files linked to the
    cached tree's (never written: see the module doc).
    """
    full = linux_tree(cache, log)
    folder = cache / f"linux-subset-{files}"
    stamp = f"subset v1 of {full} files={files}\n"
    if _complete(folder, stamp):
        return folder
    base = len(os.fsencode(full)) + 1
    entries = sorted(
        os.fsencode(path)[base:]
        for path, st in _walk(full)
        if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)
    )
    if files >= len(entries):
        raise DataError(
            f"--subset {files}: the Linux tree has only {len(entries)} files; leave --subset out"
        )
    step = len(entries) / files
    chosen = [entries[int(i * step)] for i in range(files)]
    log(f"linking {files} of the Linux tree's {len(entries)} files into {folder}")
    tmp = _start_fresh(folder)
    src_root, dst_root = os.fsencode(full), os.fsencode(tmp)
    for rel in chosen:
        src, dst = src_root + b"/" + rel, dst_root + b"/" + rel
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if os.path.islink(src):
            os.symlink(os.readlink(src), dst)
        else:
            os.link(src, dst)
    tmp.rename(folder)
    _mark_complete(folder, stamp)
    return folder


def source_tree(cache: Path, log: Log, *, quick: bool, subset: int | None) -> tuple[Path, str]:
    """The tree the sync and mirror scenarios work on, and how the section names it."""
    if quick:
        return quick_tree(cache, log), "a generated tree (--quick)"
    if subset:
        return (
            linux_subset(cache, subset, log),
            f"a subset of the Linux 6.1 source tree (`--subset {subset}`: every k-th file of "
            f"Debian's `{LINUX_PACKAGE}`)",
        )
    return linux_tree(cache, log), f"the Linux 6.1 source tree (Debian `{LINUX_PACKAGE}`)"


def hardlink_copy(src: Path, dst: Path) -> None:
    """Copy `src` to the new path `dst` with every file hard-linked (see the module doc)."""
    if dst.exists():
        raise FileExistsError(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-al", "--", str(src), str(dst)], check=True)


def _walk(root: Path) -> Iterator[tuple[Path, os.stat_result]]:
    """Every entry under root (not root itself), without following symlinks."""
    stack = [root]
    while stack:
        folder = stack.pop()
        with os.scandir(folder) as it:
            for item in it:
                st = item.stat(follow_symlinks=False)
                yield Path(item.path), st
                if item.is_dir(follow_symlinks=False):
                    stack.append(Path(item.path))


def tree_stats(root: Path) -> TreeStats:
    files = symlinks = dirs = size = 0
    for _, st in _walk(root):
        if stat.S_ISLNK(st.st_mode):
            symlinks += 1
        elif stat.S_ISDIR(st.st_mode):
            dirs += 1
        elif stat.S_ISREG(st.st_mode):
            files += 1
            size += st.st_size
    return TreeStats(files, symlinks, dirs, size)


def regular_files(root: Path) -> list[bytes]:
    """Relative paths of the regular files under root, sorted bytewise (as git sorts)."""
    rel: list[bytes] = []
    base = len(os.fsencode(root)) + 1
    for path, st in _walk(root):
        if stat.S_ISREG(st.st_mode):
            rel.append(os.fsencode(path)[base:])
    rel.sort()
    return rel


def modify_every_nth(root: Path, n: int = 100) -> list[bytes]:
    """Append CHANGE_SUFFIX to every n-th regular file in sorted order; returns their paths.

    Written as a new file renamed over the old name: in a hardlinked copy that gives the file
    a new inode and leaves the cached original untouched, and it is also how most editors
    and sync tools (rclone included) replace a file.
    """
    chosen = regular_files(root)[n - 1 :: n]
    base = os.fsencode(root)
    for rel in chosen:
        path = base + b"/" + rel
        st = os.lstat(path)
        head, _, name = path.rpartition(b"/")
        tmp = head + b"/.bench-tmp-" + name
        with open(path, "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, CHUNK)
            dst.write(CHANGE_SUFFIX)
        os.chmod(tmp, st.st_mode & 0o7777)
        os.replace(tmp, path)
    return chosen


def warm_up(root: Path) -> tuple[int, int]:
    """Read every file under root once, so each tool starts with the same warm page cache.

    Dropping the page cache needs root and a quiet machine; warming it is reliable, and a
    backup server's daily run usually finds recently synced files in memory anyway.
    """
    files = size = 0
    buf = bytearray(CHUNK)
    for path, st in _walk(root):
        if not stat.S_ISREG(st.st_mode):
            continue
        with path.open("rb", buffering=0) as f:
            while f.readinto(buf):
                pass
        files += 1
        size += st.st_size
    return files, size


def dir_size(root: Path) -> int:
    """Apparent size in bytes of every regular file under root (what `du -sb` counts)."""
    return sum(st.st_size for _, st in _walk(root) if stat.S_ISREG(st.st_mode))


def settle(since: float, seconds: float) -> None:
    """Wait until `seconds` have passed since the monotonic time `since`.

    Stat caches (git's index, Bluegrass's, borg's) distrust a file changed within a second
    or two of being recorded and re-read it next time. A tree hardlinked or changed just
    before a snapshot would make the following no-change step look slower than it is in
    real use, where files change long before the daily commit.
    """
    left = since + seconds - time.monotonic()
    if left > 0:
        time.sleep(left)


def flush() -> None:
    """Write dirty pages out before a timed step, so no tool pays for another's writes
    (Bluegrass syncs the file system before moving its branch; borg and restic fsync)."""
    os.sync()
