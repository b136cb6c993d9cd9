"""What a sync is about to do to the cloud, read before bisync runs (decisions 64 and 65).

bisync's own guards do not cover a mass overwrite: its "all files were changed" abort needs
*every* listed entry changed, and the check file (never edited) and any folder keep that from
ever happening. So before bisync runs, the laptop compares this computer's files with bisync's
record of the last sync (its Path1 listing, `- SIZE HASH ID MODTIME "NAME"` per file, `d ...`
per folder): a file whose size or modification time moved since then is one bisync will copy
over the cloud's copy. This costs one stat per listed file, and no network.

The listing also turns rclone's "too many deletes (>28%, 17 of 23)", which counts folders
with files, into a count of files.
"""

from __future__ import annotations

import calendar
import collections
import math
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from bluegrass.laptop import filters

# The listings keep nanoseconds, the cloud's sftp side whole seconds; bisync takes the coarser
# precision, so a file is "changed" for it only when its time moved by at least this much.
MODIFY_WINDOW_NS = 1_000_000_000
# Fewer overwrites than this never stop a sync, whatever their share: in a segment of three
# files, editing two in one afternoon is ordinary work, not an attack.
MIN_CHANGED = 5
# Files whose cloud copy and new local bytes are compared for signs of encryption, at most,
# and how much of each is read: one `rclone cat` each, only once the guard has tripped.
SAMPLE_FILES = 6
SAMPLE_BYTES = 4096
# Shorter samples say too little: random bytes of 256 measured 7.07-7.3 bits per byte.
MIN_SAMPLE_BYTES = 256
# Measured (docs/decisions.md 64): English text and Python source are 4.5-4.9 bits per byte
# at any sample size; compressed data sits within 0.1 of random bytes.
STRUCTURED_BELOW = 6.0
RANDOM_MARGIN = 0.35


@dataclass(frozen=True)
class Entry:
    folder: bool
    size: int
    mtime_ns: int | None


def unquote(text: str) -> str:
    """A name as bisync writes it (Go's strconv.Quote), back to text.

    Bytes that are not UTF-8 were already replaced by rclone before quoting, so the \\x
    escapes only ever carry ASCII control characters.
    """
    if "\\" not in text:
        return text  # nearly every name: nothing escaped
    out: list[str] = []
    i = 0
    simple = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
    while i < len(text):
        ch = text[i]
        if ch != "\\" or i + 1 == len(text):
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        width = {"x": 2, "u": 4, "U": 8}.get(nxt)
        if width is not None:
            out.append(chr(int(text[i + 2 : i + 2 + width], 16)))
            i += 2 + width
        else:
            out.append(simple.get(nxt, nxt))
            i += 2
    return "".join(out)


_EPOCH_DAYS: dict[str, int] = {}  # "YYYY-MM-DD" → seconds at its midnight, UTC
_TIME = re.compile(r"(\d{4}-\d\d-\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9})\d*)?([+-])(\d\d)(\d\d)$")


def _mtime_ns(text: str) -> int | None:
    """2026-12-07T04:09:07.786193186+0000 → nanoseconds since the epoch (None if odd).

    The listing of a large segment has one such time per file (78k on the Linux tree): this
    reads the shape bisync writes with one regular expression and a cache of days (80k lines
    in well under a second, where strptime took 2 s), and anything else the slow way.
    """
    match = _TIME.match(text)
    if match is None:
        return _mtime_ns_slowly(text)
    date, hour, minute, second, fraction, sign, zone_h, zone_m = match.groups()
    day = _EPOCH_DAYS.get(date)
    if day is None:
        try:
            day = _EPOCH_DAYS[date] = calendar.timegm(
                (int(date[:4]), int(date[5:7]), int(date[8:]), 0, 0, 0)
            )
        except ValueError:
            return None
    offset = int(zone_h) * 3600 + int(zone_m) * 60
    seconds = day + int(hour) * 3600 + int(minute) * 60 + int(second)
    seconds += -offset if sign == "+" else offset
    return seconds * 1_000_000_000 + (int(fraction.ljust(9, "0")) if fraction else 0)


def _mtime_ns_slowly(text: str) -> int | None:
    try:
        whole, _, rest = text.partition(".")
        digits = "".join(c for c in rest if c.isdigit())[:9]
        zone = rest[len(digits) :] if rest else whole[19:]
        moment = datetime.strptime(whole[:19] + zone, "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        return None
    return int(moment.timestamp()) * 1_000_000_000 + int(digits.ljust(9, "0") or 0)


_READ: dict[Path, tuple[tuple[int, int], dict[str, Entry]]] = {}


def read_listing(path: Path) -> dict[str, Entry]:
    """A bisync listing: name → entry. Lines that do not parse are left out.

    A run reads the same listing for more than one check (the change guard, hidden edits):
    it is parsed once while its size and time stay the same. The result is not to be changed.
    """
    try:
        st = path.stat()
    except OSError:
        return {}
    key = (st.st_size, st.st_mtime_ns)
    known = _READ.get(path)
    if known is not None and known[0] == key:
        return known[1]
    found = _parse_listing(path)
    _READ.clear()  # a run reads two listings at most: keep only the last
    _READ[path] = (key, found)
    return found


def _parse_listing(path: Path) -> dict[str, Entry]:
    found: dict[str, Entry] = {}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return found
    for line in text.splitlines():
        if not line or line[0] not in "-d" or not line.endswith('"'):
            continue
        head, quote, rest = line.partition(' "')
        if not quote:
            continue
        parts = head.split()
        if len(parts) != 5:
            continue
        try:
            size = int(parts[1])
        except ValueError:
            continue
        found[unquote(rest[:-1])] = Entry(parts[0] == "d", size, _mtime_ns(parts[4]))
    return found


def prior_listing(workdir: Path, side: str) -> Path | None:
    """The listing of the last sync for side ("path1"/"path2"): the current one, else the
    backups `--recover` uses, else the one a critical error set aside."""
    for suffix in (".lst", ".lst-old", ".lst-err"):
        found = sorted(workdir.glob(f"*.{side}{suffix}"))
        if found:
            return found[0]
    return None


@dataclass
class Changes:
    files: int  # files in the last sync's listing (the check file left out)
    changed: list[str] = field(default_factory=list)  # of those, overwritten here since

    def share(self) -> float:
        return len(self.changed) / self.files if self.files else 0.0

    def too_many(self, percent: int) -> bool:
        return len(self.changed) >= MIN_CHANGED and self.share() * 100 > percent


def local_changes(folder: Path, listing: dict[str, Entry]) -> Changes:
    """Which of the listed files bisync will see changed on this computer (and so copy over
    the cloud's copy): same name, still a file, size or time moved."""
    result = Changes(files=0)
    for name, entry in listing.items():
        if entry.folder or name == filters.CHECK_FILENAME:
            continue
        result.files += 1
        try:
            st = folder.joinpath(*name.split("/")).lstat()
        except (OSError, ValueError):
            continue  # gone, or not a name this system can hold: deletes are counted apart
        if not stat.S_ISREG(st.st_mode):
            continue
        moved = entry.mtime_ns is None or abs(st.st_mtime_ns - entry.mtime_ns) >= MODIFY_WINDOW_NS
        if st.st_size != entry.size or moved:
            result.changed.append(name)
    return result


def files_only(listing: dict[str, Entry], names: Iterable[str]) -> tuple[int, int]:
    """(how many of `names` are files in the listing, how many files it lists), the check
    file left out: it is ours, not one of the user's files."""
    files = {n for n, e in listing.items() if not e.folder and n != filters.CHECK_FILENAME}
    return sum(1 for n in set(names) if n in files), len(files)


# -- does it look like encryption? ------------------------------------------------------------


def entropy(data: bytes) -> float:
    """Shannon entropy in bits per byte."""
    if not data:
        return 0.0
    n = len(data)
    return -sum(c / n * math.log2(c / n) for c in collections.Counter(data).values())


def random_entropy(n: int) -> float:
    """What n random bytes measure, on average: 8 bits less the estimator's known bias
    (Miller-Madow, 255 / (2 n ln 2)); measured 7.18 at 256 bytes, 7.95 at 4096."""
    return 8.0 - 255 / (2 * n * math.log(2))


def looks_encrypted(before: bytes, after: bytes) -> bool | None:
    """True: structured bytes (text and the like) became random-looking ones; False: not;
    None: too short to say."""
    if len(before) < MIN_SAMPLE_BYTES or len(after) < MIN_SAMPLE_BYTES:
        return None
    structured = entropy(before) < STRUCTURED_BELOW
    random_now = entropy(after) >= random_entropy(len(after)) - RANDOM_MARGIN
    return structured and random_now


def sample(names: list[str], count: int = SAMPLE_FILES) -> list[str]:
    """Up to `count` names spread over the list (not just the first folder's)."""
    if len(names) <= count:
        return list(names)
    step = len(names) / count
    return [names[int(i * step)] for i in range(count)]


def head(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(SAMPLE_BYTES)
    except OSError:
        return b""


def verdict(pairs: list[tuple[bytes, bytes]]) -> bool:
    """Encryption-like when at least two sampled files could be judged and most of those
    went from structured to random."""
    judged = [v for v in (looks_encrypted(b, a) for b, a in pairs) if v is not None]
    return len(judged) >= 2 and sum(judged) * 2 > len(judged)


def local_path(folder: Path, name: str) -> Path:
    return folder.joinpath(*name.split("/"))
