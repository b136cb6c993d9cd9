"""The pre-scan: before each sync, find what cannot be synced, so nothing is dropped in silence.

rclone skips some things with only a log line (sockets, FIFOs, devices; one of two names that
differ only in Unicode normalisation), and some would break the whole run (a regular file named
`*.rclonelink` under --links, an unreadable file). The scan walks the segment's folder and
returns:

- `unsyncable`: not synced. Those that would break the run get an exact --exclude rule.
- `warnings`: synced, but worth knowing (a name other computers will show differently).

Names are read as bytes on POSIX, so a name that is not valid UTF-8 is seen as it is.

Symlinks are synced as links (`--links`: NAME.rclonelink on the cloud) except on Windows,
where making a symlink needs privileges most users lack: there a symlink is reported instead,
and a NAME.rclonelink coming from the cloud is an ordinary file.
"""

from __future__ import annotations

import os
import re
import stat
import sys
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path

from bluegrass.laptop import filters

LINK_SUFFIX = ".rclonelink"

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


def scan(root: Path, excludes: filters.Excludes, *, links: bool = SYNC_LINKS) -> ScanResult:
    result = ScanResult([], [])
    top: bytes | str = os.fsencode(root) if os.name == "posix" else str(root)
    _walk(top, "", excludes, result, links)
    result.unsyncable.sort(key=lambda f: (f.path, f.kind))
    result.warnings.sort(key=lambda f: (f.path, f.kind))
    return result


def _join(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def _walk(
    folder: bytes | str, prefix: str, excludes: filters.Excludes, out: ScanResult, links: bool
) -> None:
    try:
        entries = list(os.scandir(folder))
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
        return
    by_nfc: dict[str, list[str]] = {}
    by_case: dict[str, list[tuple[str, str]]] = {}
    for entry in entries:
        shown = _show(entry.name)
        relative = _join(prefix, shown)
        text = _text(entry.name)
        try:
            is_link = entry.is_symlink()
            is_dir = not is_link and entry.is_dir(follow_symlinks=False)
            is_file = not is_link and entry.is_file(follow_symlinks=False)
        except OSError:
            continue  # vanished while we looked
        if excludes.excludes(relative, is_dir=is_dir):
            continue
        if text is None:
            out.warnings.append(
                Finding(
                    relative,
                    "invalid-utf8",
                    "the name is not valid UTF-8: it is backed up byte-exact, but computers "
                    "that need UTF-8 names (macOS, Windows, the web view) show each bad byte "
                    "as ‛XX",
                )
            )
        else:
            if SYNC_LINKS and _WINDOWS_RESERVED.fullmatch(text):
                out.warnings.append(
                    Finding(
                        relative,
                        "windows-reserved-name",
                        "Windows reserves this name for a device: it is synced, but a Windows "
                        "computer syncing this segment cannot hold it",
                    )
                )
            nfc = unicodedata.normalize("NFC", text)
            by_nfc.setdefault(nfc, []).append(shown)
            by_case.setdefault(nfc.casefold(), []).append((shown, nfc))
        if is_dir:
            _walk(entry.path, relative, excludes, out, links)
        elif is_file:
            out.files += 1
            _check_file(entry, relative, shown, text, out, links)
        elif is_link and not links:
            out.unsyncable.append(
                Finding(
                    relative,
                    "symlink",
                    "symlinks are not synced on Windows (making one needs extra privileges); "
                    "the file or folder it points to is not synced through it either",
                )
            )
        elif not is_link:
            _check_special(entry, relative, out)
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
    if filters.is_partial_name(shown):
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
