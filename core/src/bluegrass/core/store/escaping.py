"""The reversible mapping between a user's file names and the names stored in git.

Git refuses, or its fsck rejects, some names a user's folder can hold: `.git` in any case or
NTFS/HFS spelling, and `.gitmodules`/`.gitattributes` whose content fsck parses (a mirror that
checks objects would refuse the whole history). Such a name is stored escaped:

    escaped = "%%" + the name with each byte of  % . space ~ \\ :  written as %XX (upper hex)

A stored name that starts with "%%" is always an escaped one, so a user's own name that starts
with "%%" is escaped too. Every other name is stored as it is. docs/repository-format.md
describes the same rule for someone recovering data by hand.
"""

from __future__ import annotations

import re

MARKER = b"%%"
# Bumped whenever the set of escaped names changes: a repository whose tree was written under
# older rules is rebuilt in full on its next snapshot, so a stale unescaped entry cannot stay.
RULES_VERSION = "2"
_ESCAPED_BYTES = frozenset(b"%. ~\\:")
_HFS_IGNORABLE = re.compile("[\u200c-\u200f\u202a-\u202e\u206a-\u206f\ufeff]")
# Names git treats as its own, after NTFS trimming of trailing dots and spaces.
_DOT_NAMES = {b".git", b"git~1", b".gitmodules", b".gitattributes"}
_INVALID_UTF8 = re.compile("[\udc80-\udcff]")
_HFS_NAMES = {".git", ".gitmodules", ".gitattributes"}
# NTFS 8.3 short names: "gitmod~1".."gitmod~4" and the hashed fall-back forms "gi7eba~N"
# (.gitmodules) and "gi7d29~N" (.gitattributes), matched here more widely than git does:
# escaping a harmless name costs nothing, missing a dangerous one breaks every mirror.
_SHORT_NAME = re.compile(
    rb"(gitmod|gitatt)~[0-9]+|(g(i(7(e(ba?)?|d(29?)?)?)?)?)?~[0-9]+|git~[0-9]+"
)


def _is_ntfs_special(name: bytes) -> bool:
    # NTFS treats backslash as a separator and ':' as the start of a stream name.
    for part in name.split(b"\\"):
        base = part.split(b":", 1)[0].rstrip(b". ").lower()
        if base in _DOT_NAMES or _SHORT_NAME.fullmatch(base):
            return True
    return False


def _is_hfs_special(name: bytes) -> bool:
    text = name.decode("utf-8", "surrogateescape")
    # git's HFS reader stops at the first invalid UTF-8 sequence, as if the name ended there:
    # ".GIT\x80" is ".GIT" to it.
    invalid = _INVALID_UTF8.search(text)
    if invalid is not None:
        text = text[: invalid.start()]
    return _HFS_IGNORABLE.sub("", text).lower() in _HFS_NAMES


def _maybe_special(text: bytes) -> bool:
    """A cheap over-approximation: False means no component of `text` can need escaping.

    Every special name contains "git" (in some case), or a "~" (short names), or an HFS
    ignorable code point (UTF-8 lead bytes E2/EF), or the "%%" marker.
    """
    return (
        b"~" in text
        or b"%%" in text
        or b"\xe2" in text
        or b"\xef" in text
        or b"git" in text.lower()
    )


def needs_escape(name: bytes) -> bool:
    """True when `name` (one path component) must be stored escaped."""
    if not _maybe_special(name):
        return False
    return name.startswith(MARKER) or _is_ntfs_special(name) or _is_hfs_special(name)


def escape(name: bytes) -> bytes:
    """The git name for one path component of the user's tree."""
    if not needs_escape(name):
        return name
    out = bytearray(MARKER)
    for byte in name:
        if byte in _ESCAPED_BYTES:
            out += b"%%%02X" % byte
        else:
            out.append(byte)
    return bytes(out)


def unescape(name: bytes) -> bytes:
    """The user's name for one component stored in git; inverse of escape()."""
    if not name.startswith(MARKER):
        return name
    body = name[len(MARKER) :]
    out = bytearray()
    i = 0
    while i < len(body):
        byte = body[i]
        if byte == 0x25:  # '%'
            digits = body[i + 1 : i + 3]
            if len(digits) != 2 or not all(c in b"0123456789ABCDEF" for c in digits):
                raise ValueError(f"malformed escaped name {name!r}")
            out.append(int(digits, 16))
            i += 3
        else:
            out.append(byte)
            i += 1
    return bytes(out)


def escape_path(path: bytes) -> bytes:
    """Escape every component of a '/'-separated relative path."""
    if not _maybe_special(path):
        return path
    return b"/".join(escape(part) for part in path.split(b"/"))


def unescape_path(path: bytes) -> bytes:
    return b"/".join(unescape(part) for part in path.split(b"/"))
