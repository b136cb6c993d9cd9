"""Damage planted in a real repository, as a disk's flipped bit would leave it."""

from __future__ import annotations

import subprocess
from pathlib import Path


def flip_in_pack(repo: Path, oid: str | None = None) -> str:
    """Flip one byte in the middle of an object (the largest, unless named) of the
    repository's only pack; return that object's id."""
    (idx,) = (repo / "objects" / "pack").glob("pack-*.idx")
    listing = subprocess.run(
        ["git", "show-index"], stdin=idx.open("rb"), capture_output=True, check=True, text=True
    ).stdout
    entries = sorted(
        (int(off), oid) for off, oid, *_ in (ln.split() for ln in listing.splitlines())
    )
    pack = idx.with_suffix(".pack")
    ends = [off for off, _ in entries[1:]] + [pack.stat().st_size - 20]
    spans = [(s, e, o) for (s, o), e in zip(entries, ends, strict=True)]
    if oid is None:
        start, end, oid = max(spans, key=lambda t: t[1] - t[0])
    else:
        start, end, _ = next(t for t in spans if t[2] == oid)
    flip(pack, (start + end) // 2)
    return oid


def flip(path: Path, at: int) -> None:
    path.chmod(0o644)  # git writes packs and loose objects read-only
    with path.open("r+b") as handle:
        handle.seek(at)
        byte = handle.read(1)
        handle.seek(at)
        handle.write(bytes([byte[0] ^ 0x40]))
