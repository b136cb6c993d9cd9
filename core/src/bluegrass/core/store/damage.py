"""A repository's stored objects checked cheaply, and the mark that says it is known damaged.

`git fsck --full` inflates and hashes every object: minutes on a large history, too slow for
every commit. Most damage (a flipped bit on disk, a truncated write) changes the bytes an
object is stored as, and that is seen without inflating anything: a pack's index (v2) holds
a CRC-32 of every object's stored bytes, so reading the packs once and comparing the CRCs
names the damaged object. Loose objects (those written since the last `maintain`) are few,
and each is inflated and hashed.

The mark (`bluegrass/damaged.json` in the repository, beside the lock; never fetched by a
mirror nor replicated) is set by whatever first meets the damage and read by every job
before it writes: a job on a repository known to be damaged stops and says so, until a
repair whose full verify passes clears it (docs/decisions.md 220).
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import struct
import zlib
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from bluegrass.core.errors import BluegrassError

MARK = "damaged.json"
_IDX_MAGIC = b"\377tOc"
_SHA1 = 20
# Read loose objects in pieces: a loose object may be large (up to core.bigFileThreshold).
_CHUNK = 1 << 20


class RepositoryDamaged(BluegrassError):
    """A job met a repository known to be damaged, or found it so."""


@dataclass(frozen=True)
class Damage:
    """What is known to be wrong with a repository, and who found it when."""

    found_by: str
    found_at: str
    problems: list[str]

    def describe(self, name: str) -> str:
        first = self.problems[0] if self.problems else "no detail recorded"
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        return (
            f"{name}: the repository is damaged ({first}{more}; found by {self.found_by} "
            f"at {self.found_at}); nothing is written to it until `bluegrass-cloud repair` "
            "heals it"
        )


def _state(repo_path: Path) -> Path:
    return repo_path / "bluegrass"


def read_mark(repo_path: Path) -> Damage | None:
    """Given a repository's path, return the damage recorded in it, or None."""
    try:
        data = json.loads((_state(repo_path) / MARK).read_text(encoding="utf-8"))
        return Damage(str(data["found_by"]), str(data["found_at"]), list(data["problems"]))
    except (FileNotFoundError, NotADirectoryError):
        # No mark; also where the repository's place is not a folder at all: that is not
        # damage found in a history, and the job then fails for its real reason.
        return None
    except (OSError, ValueError, KeyError, TypeError):
        # A mark that cannot be read still says the repository is damaged.
        return Damage("unknown", "unknown", ["the damage mark cannot be read"])


def write_mark(repo_path: Path, problems: list[str], found_by: str) -> Damage:
    """Record the damage (the first finding stays: it names what was met first)."""
    found = read_mark(repo_path)
    if found is not None:
        return found
    damage = Damage(found_by, datetime.now(UTC).isoformat(timespec="seconds"), problems[:20])
    state = _state(repo_path)
    state.mkdir(exist_ok=True)
    tmp = state / f".{MARK}.{os.getpid()}"
    tmp.write_text(json.dumps(asdict(damage), indent=1) + "\n", encoding="utf-8")
    tmp.replace(state / MARK)
    return damage


def clear_mark(repo_path: Path) -> None:
    (_state(repo_path) / MARK).unlink(missing_ok=True)


def check_objects(repo_path: Path, loose_limit: int | None = None) -> list[str]:
    """Given a bare repository's path, return one line per damaged stored object (empty: the
    stored bytes are as written). Packs by their index's CRCs, loose objects by their hash;
    with `loose_limit`, loose objects only when there are no more than that many (inflating
    them is the slow part: 78k of them, a fresh snapshot of the Linux tree, took 22 s)."""
    objects = repo_path / "objects"
    problems: list[str] = []
    for idx in sorted((objects / "pack").glob("pack-*.idx")):
        pack = idx.with_suffix(".pack")
        try:
            problems += _check_pack(idx, pack)
        except FileNotFoundError:
            continue  # merged away by a repack meanwhile: its objects are in the new pack
    loose = [
        path
        for folder in sorted(objects.glob("[0-9a-f][0-9a-f]"))
        for path in sorted(folder.iterdir())
        if len(path.name) == 38 and not path.name.startswith("tmp_")
    ]
    if loose_limit is not None and len(loose) > loose_limit:
        return problems
    for path in loose:
        problem = _check_loose(path.parent.name + path.name, path)
        if problem:
            problems.append(problem)
    return problems


def _check_pack(idx: Path, pack: Path) -> list[str]:
    name = pack.name
    raw = idx.read_bytes()
    if raw[:4] != _IDX_MAGIC or struct.unpack(">I", raw[4:8])[0] != 2:
        return [f"{name}: its index is damaged or not version 2"]
    count = struct.unpack(">I", raw[8 + 255 * 4 : 8 + 256 * 4])[0]
    base = 8 + 256 * 4
    oids = raw[base : base + count * _SHA1]
    crc_at = base + count * _SHA1
    off_at = crc_at + count * 4
    large_at = off_at + count * 4
    crcs = struct.unpack(f">{count}I", raw[crc_at:off_at])
    offsets = []
    for i, small in enumerate(struct.unpack(f">{count}I", raw[off_at:large_at])):
        if small & 0x80000000:
            j = small & 0x7FFFFFFF
            small = struct.unpack(">Q", raw[large_at + 8 * j : large_at + 8 * j + 8])[0]
        offsets.append((small, i))
    problems: list[str] = []
    size = pack.stat().st_size
    if size < 12 + _SHA1:
        return [f"{name}: truncated ({size} bytes)"]
    with pack.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as m:
        view = memoryview(m)
        try:
            if view[:4] != b"PACK":
                return [f"{name}: not a pack (bad header)"]
            ordered = sorted(offsets)
            ends = [o for o, _ in ordered[1:]] + [size - _SHA1]
            for (start, i), end in zip(ordered, ends, strict=True):
                if end > size - _SHA1 or zlib.crc32(view[start:end]) != crcs[i]:
                    oid = oids[i * _SHA1 : (i + 1) * _SHA1].hex()
                    problems.append(f"object {oid} in {name} is damaged (its stored bytes changed)")
        finally:
            view.release()
    return problems


def _check_loose(oid: str, path: Path) -> str | None:
    inflate = zlib.decompressobj()
    digest = hashlib.sha1(usedforsecurity=False)
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(inflate.decompress(chunk))
            digest.update(inflate.flush())
        if not inflate.eof:
            return f"object {oid} (loose) is damaged (it ends early)"
    except zlib.error as exc:
        return f"object {oid} (loose) is damaged ({exc})"
    except FileNotFoundError:
        return None  # packed by a repack meanwhile: the pack's check covers it
    except OSError as exc:
        return f"object {oid} (loose) cannot be read ({exc.strerror})"
    if digest.hexdigest() != oid:
        return f"object {oid} (loose) is damaged (its content does not match its name)"
    return None
