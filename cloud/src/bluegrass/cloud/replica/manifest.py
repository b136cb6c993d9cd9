"""The replica's manifests: what a complete upload holds, each object with its sha256.

A manifest is written last, after every object it names has been uploaded, under a new key
(`manifests/<seq>.json`, seq one above the highest in the bucket): the newest manifest whose
objects are all there is the replica's state, and objects a killed run left without one are
simply not part of any state yet (the next run takes them up or ignores them). Crypt does not
detect a truncated object (research report, B), so a reader checks each object's sha256.

A user's manifest lists every bundle of every segment in order; a segment's history is
rebuilt from its newest full bundle and the incremental ones after it. The server's lists the
state files of one upload, `state/<seq>/...`.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

FORMAT = "bluegrass-replica-manifest 1"
MANIFESTS = "manifests"
_MANIFEST_KEY = re.compile(r"manifests/(\d{6,})\.json")
_BUNDLE_KEY = re.compile(r"[a-z0-9][a-z0-9-]{0,62}/(\d{6,})-(full|inc)\.bundle")


class ManifestError(ValueError):
    pass


@dataclass(frozen=True)
class StoredObject:
    key: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Bundle:
    """One git bundle of a segment: what it needs, what it brings, where its refs are."""

    key: str
    kind: str  # "full" or "inc"
    prerequisites: list[str]
    tips: dict[str, str]  # ref -> commit after this bundle is fetched
    sha256: str
    size: int
    refs_key: str
    refs_sha256: str
    refs_size: int

    @property
    def seq(self) -> int:
        return bundle_seq(self.key)

    def objects(self) -> list[StoredObject]:
        return [
            StoredObject(self.key, self.sha256, self.size),
            StoredObject(self.refs_key, self.refs_sha256, self.refs_size),
        ]


@dataclass
class Manifest:
    kind: str  # "user" or "server"
    seq: int
    created: str  # UTC, ISO 8601
    user: str = ""
    segments: dict[str, list[Bundle]] = field(default_factory=dict)
    state: list[StoredObject] = field(default_factory=list)

    @property
    def key(self) -> str:
        return manifest_key(self.seq)

    def objects(self) -> list[StoredObject]:
        found = list(self.state)
        for bundles in self.segments.values():
            for bundle in bundles:
                found += bundle.objects()
        return found

    def chain(self, segment: str) -> list[Bundle]:
        """The bundles that rebuild the segment: its newest full one and those after it."""
        bundles = self.segments.get(segment, [])
        start = max((i for i, b in enumerate(bundles) if b.kind == "full"), default=0)
        return bundles[start:]

    def to_json(self) -> str:
        data = {"format": FORMAT, **asdict(self)}
        return json.dumps(data, indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        try:
            data = json.loads(text)
            if data.get("format") != FORMAT:
                raise ManifestError(f"not a replica manifest (format {data.get('format')!r})")
            return cls(
                kind=str(data["kind"]),
                seq=int(data["seq"]),
                created=str(data["created"]),
                user=str(data.get("user", "")),
                segments={
                    name: [Bundle(**b) for b in bundles]
                    for name, bundles in data.get("segments", {}).items()
                },
                state=[StoredObject(**o) for o in data.get("state", [])],
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ManifestError(f"damaged manifest: {exc}") from None


def manifest_key(seq: int) -> str:
    return f"{MANIFESTS}/{seq:06d}.json"


def manifest_seq(key: str) -> int | None:
    found = _MANIFEST_KEY.fullmatch(key)
    return int(found.group(1)) if found else None


def bundle_key(segment: str, seq: int, kind: str) -> str:
    return f"{segment}/{seq:06d}-{kind}.bundle"


def refs_key(segment: str, seq: int) -> str:
    return f"{segment}/{seq:06d}.refs"


def bundle_seq(key: str) -> int:
    found = _BUNDLE_KEY.fullmatch(key)
    if not found:
        raise ManifestError(f"not a bundle name: {key}")
    return int(found.group(1))


def highest_seq(keys: list[str], segment: str) -> int:
    """The highest bundle number under the segment's folder, uploaded by anyone, so a new
    bundle never takes a name already in the bucket (whatever our local record says)."""
    best = 0
    for key in keys:
        if key.startswith(segment + "/"):
            found = re.match(r"(\d{6,})[-.]", key[len(segment) + 1 :])
            if found:
                best = max(best, int(found.group(1)))
    return best


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
