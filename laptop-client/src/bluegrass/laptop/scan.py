"""The pre-scan: before each sync, find what cannot be synced, so nothing is dropped in silence.

rclone skips some things with only a log line (sockets, FIFOs, devices; one of two names that
differ only in Unicode normalisation), and some would break the whole run (a regular file named
`*.rclonelink` under --links, an unreadable file). The scan walks the segment's folder and
returns:

- `unsyncable`: not synced. Those that would break the run get an exact --exclude rule.
- `warnings`: synced, but worth knowing (a name other computers will show differently).

Names are read as bytes on POSIX, so a name that is not valid UTF-8 is seen as it is.

With a Memo, a folder whose times did not change since the last scan is not read again: its
findings are the ones remembered (see Memo for what that can miss and how it is caught).

Symlinks are synced as links (`--links`: NAME.rclonelink on the cloud) except on Windows,
where making a symlink needs privileges most users lack: there a symlink is reported instead,
and a NAME.rclonelink coming from the cloud is an ordinary file.
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
import time
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path

from bluegrass.core import treestate
from bluegrass.laptop import filters
from bluegrass.laptop.settings import write_atomic

LINK_SUFFIX = ".rclonelink"
RESERVED = ".bluegrass-meta"  # bluegrass.laptop.metadata.REMOTE_FOLDER, at a segment's root

# Windows: rclone runs without --links (see bluegrass.laptop.bisync.SYNC_LINKS).
SYNC_LINKS = sys.platform != "win32"

# Names Windows reserves for devices, with any extension. rclone maps the characters Windows
# forbids (<>:"|?* and a trailing dot or space) to look-alikes on Windows, but not these.
_WINDOWS_RESERVED = re.compile(r"(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³])(\..*)?", re.IGNORECASE)

SPECIAL_KINDS = (
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISFIFO, "FIFO (named pipe)"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
)


@dataclass(frozen=True)
class Finding:
    path: str  # relative to the segment, '/'-separated; bad bytes shown as \\xNN
    kind: str
    reason: str
    exclude: str | None = None  # an rclone --exclude rule that keeps it out of the run

    def to_json(self) -> dict[str, str]:
        data = asdict(self)
        data.pop("exclude")
        return data


@dataclass
class ScanResult:
    unsyncable: list[Finding]
    warnings: list[Finding]
    files: int = 0

    @property
    def excludes(self) -> list[str]:
        return [f.exclude for f in self.unsyncable if f.exclude]


def _show(name: bytes | str) -> str:
    if isinstance(name, bytes):
        return name.decode("utf-8", "backslashreplace")
    return name.encode("utf-8", "surrogatepass").decode("utf-8", "backslashreplace")


def _text(name: bytes | str) -> str | None:
    """The name as text, or None when it is not valid UTF-8 (bytes) / has lone surrogates."""
    if isinstance(name, bytes):
        try:
            return name.decode("utf-8")
        except UnicodeDecodeError:
            return None
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return name


def _names(name: bytes | str) -> tuple[str, str | None]:
    """(_show(name), _text(name)), decoding once: the scan does this for every entry."""
    text = _text(name)
    return (text if text is not None else _show(name)), text


# The first three letters of every name _WINDOWS_RESERVED can match: most names are ruled out
# by a set lookup instead of a regular expression.
_RESERVED_STARTS = frozenset({"con", "prn", "aux", "nul", "com", "lpt"})


# A folder changed this recently may change again within its timestamp's resolution without
# its time moving: it is looked at entry by entry, and not remembered (the racy window of
# the sync's own state check, bluegrass.core.treestate).
RACY_NS = int(treestate.RACY_SECONDS * 1e9)
MEMO_VERSION = 1


@dataclass
class _Folder:
    """What one folder's own entries gave, and its subfolders walked, keyed by its times."""

    stamp: tuple[int, int]  # (st_mtime_ns, st_ctime_ns) of the folder
    subfolders: list[str]  # names (os.fsdecode of the bytes on POSIX)
    unsyncable: list[Finding]
    warnings: list[Finding]
    files: int


class Memo:
    """The last scan, folder by folder, so the next one reads only folders that changed.

    A folder whose modification and change times are what they were holds the same names
    (creating, deleting or renaming an entry moves the folder's mtime; chmod of the folder its
    ctime), so its findings stand. What a folder's times do not show: a file made unreadable
    in place. That is caught by rclone failing to read it: a run that does not end "ok" drops
    the memo (SegmentSync), and a memo older than `full_every` is not used at all.
    """

    def __init__(self, key: str, made: float, folders: dict[str, _Folder]) -> None:
        self.key = key
        self.made = made
        self.old = folders
        self.new: dict[str, _Folder] = {}
        self.started_ns = time.time_ns()
        self.reused = 0

    @classmethod
    def load(cls, path: Path, key: str, full_every: float) -> Memo:
        now = time.time()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("version") != MEMO_VERSION or data.get("key") != key:
                raise ValueError("another scan's memo")
            made = float(data["made"])
            if not 0 <= now - made < full_every:
                raise ValueError("too old")
            folders = {
                rel: _Folder(
                    (int(f["stamp"][0]), int(f["stamp"][1])),
                    list(f["subfolders"]),
                    [Finding(**x) for x in f["unsyncable"]],
                    [Finding(**x) for x in f["warnings"]],
                    int(f["files"]),
                )
                for rel, f in data["folders"].items()
            }
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return cls(key, now, {})  # a full scan, remembered from now
        return cls(key, made, folders)

    @property
    def unchanged(self) -> bool:
        """Every folder came from the memo and none went away: saving would write the same."""
        return self.reused == len(self.new) == len(self.old)

    def save(self, path: Path) -> None:
        if self.unchanged and path.exists():
            return
        data = {
            "version": MEMO_VERSION,
            "key": self.key,
            "made": self.made,
            "folders": {
                rel: {
                    "stamp": f.stamp,
                    "subfolders": f.subfolders,
                    "unsyncable": [vars(x) for x in f.unsyncable],
                    "warnings": [vars(x) for x in f.warnings],
                    "files": f.files,
                }
                for rel, f in self.new.items()
            },
        }
        write_atomic(path, json.dumps(data, separators=(",", ":")), private=False)

    def stamp(self, folder: bytes | str) -> tuple[int, int] | None:
        try:
            st = os.stat(folder)  # noqa: PTH116 - a bytes path on POSIX, which pathlib cannot hold
        except OSError:
            return None
        stamp = (st.st_mtime_ns, st.st_ctime_ns)
        return None if self.started_ns - max(stamp) < RACY_NS else stamp


def memo_key(excludes: filters.Excludes, links: bool) -> str:
    """What a memo's findings depend on besides the folders: another key, another scan."""
    return json.dumps([MEMO_VERSION, links, [p.glob for p in excludes.patterns]])


def scan(
    root: Path,
    excludes: filters.Excludes,
    *,
    links: bool = SYNC_LINKS,
    memo: Memo | None = None,
) -> ScanResult:
    result = ScanResult([], [])
    top: bytes | str = os.fsencode(root) if os.name == "posix" else str(root)
    _walk(top, "", excludes, result, links, memo)
    if os.path.lexists(root / RESERVED):
        # The cloud keeps the devices' metadata under this name; every sync leaves it out.
        result.unsyncable.append(
            Finding(RESERVED, "reserved-name", "Bluegrass uses this name; rename it to sync it")
        )
    result.unsyncable.sort(key=lambda f: (f.path, f.kind))
    result.warnings.sort(key=lambda f: (f.path, f.kind))
    return result


def _add(out: ScanResult, part: ScanResult | _Folder) -> None:
    out.unsyncable += part.unsyncable
    out.warnings += part.warnings
    out.files += part.files


def _join(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def _walk(
    folder: bytes | str,
    prefix: str,
    excludes: filters.Excludes,
    out: ScanResult,
    links: bool,
    memo: Memo | None = None,
) -> None:
    stamp = memo.stamp(folder) if memo is not None else None
    if memo is not None and stamp is not None:
        known = memo.old.get(prefix)
        if known is not None and known.stamp == stamp:
            memo.new[prefix] = known
            memo.reused += 1
            _add(out, known)
            for name in known.subfolders:
                if isinstance(folder, bytes):
                    raw: bytes | str = os.fsencode(name)
                    path: bytes | str = folder + b"/" + raw
                else:
                    raw, path = name, f"{folder}{os.sep}{name}"
                _walk(path, _join(prefix, _show(raw)), excludes, out, links, memo)
            return
    mine = ScanResult([], [])
    subfolders: list[tuple[bytes | str, str, bytes | str]] = []
    _scan_folder(folder, prefix, excludes, mine, links, subfolders)
    _add(out, mine)
    if memo is not None and stamp is not None:
        names = [os.fsdecode(name) for _, _, name in subfolders]
        memo.new[prefix] = _Folder(stamp, names, mine.unsyncable, mine.warnings, mine.files)
    for path, relative, _ in subfolders:
        _walk(path, relative, excludes, out, links, memo)


def _scan_folder(
    folder: bytes | str,
    prefix: str,
    excludes: filters.Excludes,
    out: ScanResult,
    links: bool,
    subfolders: list[tuple[bytes | str, str, bytes | str]],
) -> None:
    """One folder's own entries into `out`; (path, relative, name) of its subfolders to walk
    into `subfolders`."""
    entries = _list_folder(folder, prefix, out)
    if entries is None:
        return
    by_nfc: dict[str, list[str]] = {}
    by_case: dict[str, list[tuple[str, str]]] = {}
    any_excludes = bool(excludes.patterns)
    for entry in entries:
        shown, text = _names(entry.name)
        relative = f"{prefix}/{shown}" if prefix else shown
        try:
            is_link = entry.is_symlink()
            is_dir = not is_link and entry.is_dir(follow_symlinks=False)
            is_file = not is_link and not is_dir and entry.is_file(follow_symlinks=False)
        except OSError:
            continue  # vanished while we looked
        if any_excludes and excludes.excludes(relative, is_dir=is_dir):
            continue
        if text is None:
            out.warnings.append(_invalid_utf8(relative))
        else:
            _check_name(relative, text, out)
            _group_name(shown, text, by_nfc, by_case)
        if is_dir:
            subfolders.append((entry.path, relative, entry.name))
        elif is_file:
            out.files += 1
            _check_file(entry, relative, shown, text, out, links)
        elif is_link and not links:
            out.unsyncable.append(_unsynced_link(relative))
        elif not is_link:
            _check_special(entry, relative, out)
    _report_unicode_twins(prefix, by_nfc, out)
    _report_case_twins(prefix, by_case, out)


def _list_folder(folder: bytes | str, prefix: str, out: ScanResult) -> list[os.DirEntry] | None:
    """The folder's entries; None, with a finding below the segment's top, if it cannot be
    read."""
    try:
        return list(os.scandir(folder))
    except OSError as exc:
        if prefix:
            out.unsyncable.append(
                Finding(
                    prefix,
                    "unreadable",
                    f"this folder cannot be read ({exc.strerror}); it is not synced",
                    filters.exact_rule(prefix + "/"),
                )
            )
        return None


def _invalid_utf8(relative: str) -> Finding:
    return Finding(
        relative,
        "invalid-utf8",
        "the name is not valid UTF-8: it is backed up byte-exact, but computers "
        "that need UTF-8 names (macOS, Windows, the web view) show each bad byte "
        "as ‛XX",
    )


def _check_name(relative: str, text: str, out: ScanResult) -> None:
    if SYNC_LINKS and text[:3].lower() in _RESERVED_STARTS and _WINDOWS_RESERVED.fullmatch(text):
        out.warnings.append(
            Finding(
                relative,
                "windows-reserved-name",
                "Windows reserves this name for a device: it is synced, but a Windows "
                "computer syncing this segment cannot hold it",
            )
        )


def _group_name(
    shown: str,
    text: str,
    by_nfc: dict[str, list[str]],
    by_case: dict[str, list[tuple[str, str]]],
) -> None:
    """File the name under its NFC form and its case-folded form, to find twins afterwards."""
    # ASCII is its own NFC, and its casefold is its lower case.
    ascii_only = text.isascii()
    nfc = text if ascii_only else unicodedata.normalize("NFC", text)
    by_nfc.setdefault(nfc, []).append(shown)
    folded = nfc.lower() if ascii_only else nfc.casefold()
    by_case.setdefault(folded, []).append((shown, nfc))


def _unsynced_link(relative: str) -> Finding:
    return Finding(
        relative,
        "symlink",
        "symlinks are not synced on Windows (making one needs extra privileges); "
        "the file or folder it points to is not synced through it either",
    )


def _report_unicode_twins(prefix: str, by_nfc: dict[str, list[str]], out: ScanResult) -> None:
    for names in by_nfc.values():
        if len(names) > 1:
            for name in sorted(names):
                others = ", ".join(repr(n) for n in sorted(names) if n != name)
                out.unsyncable.append(
                    Finding(
                        _join(prefix, name),
                        "unicode-duplicate",
                        f"this folder also holds {others}, the same name in another Unicode "
                        "normalisation (NFC/NFD); only one of them is synced: rename one",
                    )
                )


def _report_case_twins(
    prefix: str, by_case: dict[str, list[tuple[str, str]]], out: ScanResult
) -> None:
    for group in by_case.values():
        if len({nfc for _, nfc in group}) > 1:
            distinct = sorted(name for name, _ in group)
            for name in distinct:
                others = ", ".join(repr(n) for n in distinct if n != name)
                out.warnings.append(
                    Finding(
                        _join(prefix, name),
                        "case-duplicate",
                        f"this folder also holds {others}, differing only in letter case: both "
                        "are synced, but a Mac or Windows computer syncing this segment can "
                        "keep only one",
                    )
                )


def _check_file(
    entry: os.DirEntry, relative: str, shown: str, text: str | None, out: ScanResult, links: bool
) -> None:
    if shown.endswith(filters.PARTIAL_SUFFIX) and filters.is_partial_name(shown):
        out.unsyncable.append(
            Finding(
                relative,
                "partial-name",
                f"the name has the shape Bluegrass gives to uploads in progress "
                f"(NAME.xxxxxxxx{filters.PARTIAL_SUFFIX}), which are never synced: rename it",
            )
        )
        return
    if links and shown.endswith(LINK_SUFFIX):
        out.unsyncable.append(
            Finding(
                relative,
                "rclonelink-name",
                f"names ending in {LINK_SUFFIX} are how symlinks are stored on the cloud, so "
                "this file cannot be synced: rename it",
                filters.exact_rule(relative) if text is not None else None,
            )
        )
        return
    if not os.access(entry.path, os.R_OK):
        out.unsyncable.append(
            Finding(
                relative,
                "unreadable",
                "this file cannot be read (permission denied); it is not synced until it can be",
                filters.exact_rule(relative) if text is not None else None,
            )
        )


def _check_special(entry: os.DirEntry, relative: str, out: ScanResult) -> None:
    try:
        mode = entry.stat(follow_symlinks=False).st_mode
    except OSError:
        return
    kind = next((label for test, label in SPECIAL_KINDS if test(mode)), "special file")
    out.unsyncable.append(
        Finding(
            relative,
            "special-file",
            f"a {kind}: only files, folders and symlinks can be synced",
        )
    )
