"""The segment's rclone filters: the in-flight upload pattern, the check file, the user's excludes.

The filters file is part of bisync's state (rclone stores its MD5 beside it and a change needs
a --resync), so its text is fully determined by the segment's configuration. Exclusions that
come and go (a file found unsyncable by the pre-scan) are passed as --exclude flags instead.
The in-flight upload suffix is core's (bluegrass.core.syncspec), shared with the cloud, which
leaves such names out of its snapshots.
"""

from __future__ import annotations

import re

from bluegrass.core import syncspec

# rclone 1.75.2 refuses a longer --partial-suffix ("Expecting suffix length not greater than 16").
RCLONE_MAX_PARTIAL_SUFFIX = 16
PARTIAL_SUFFIX = syncspec.PARTIAL_SUFFIX
# rclone names an upload in progress "<name>.<8 hex digits><suffix>" (fs/operations/copy.go).
PARTIAL_NAME = re.compile(r".*\.[0-9a-f]{8}" + re.escape(PARTIAL_SUFFIX), re.DOTALL)
PARTIAL_GLOB = "*." + "[0-9a-f]" * 8 + PARTIAL_SUFFIX

CHECK_FILENAME = syncspec.CHECK_FILENAME


def is_partial_name(name: str) -> bool:
    return PARTIAL_NAME.fullmatch(name) is not None


def filters_text(segment: str, excludes: tuple[str, ...] | list[str]) -> str:
    lines = [
        f"# Bluegrass filters for segment {segment!r}: generated, do not edit.",
        "# The check file is always synced (bisync --check-access needs it on both sides).",
        f"+ /{escape_glob(CHECK_FILENAME)}",
        "# Uploads and downloads in progress (rclone --partial-suffix) are never synced.",
        f"- {PARTIAL_GLOB}",
    ]
    if excludes:
        lines.append("# The segment's exclude list.")
        lines += [f"- {pattern}" for pattern in excludes]
    return "\n".join(lines) + "\n"


_GLOB_SPECIAL = set("\\*?[]{}")


def escape_glob(text: str) -> str:
    """A glob that matches `text` literally."""
    return "".join("\\" + ch if ch in _GLOB_SPECIAL else ch for ch in text)


def exact_rule(relative: str) -> str:
    """An --exclude pattern for exactly this path (relative to the segment, '/'-separated)."""
    return "/" + escape_glob(relative)


class Pattern:
    """An rclone filter glob, matched against '/'-separated paths relative to the segment.

    Follows rclone's rules: `*` and `?` stay inside one path element, `**` crosses them,
    `[...]` / `[!...]` classes, `{a,b}` alternatives, `{{regex}}`, `\\` escapes; a leading `/`
    anchors at the segment's root, otherwise the pattern matches whole trailing elements;
    a trailing `/` makes it a folder rule (the folder and everything in it).
    """

    def __init__(self, glob: str) -> None:
        self.glob = glob
        self.dir_only = glob.endswith("/")
        body = glob[:-1] if self.dir_only else glob
        anchored = body.startswith("/")
        if anchored:
            body = body[1:]
        prefix = "^" if anchored else "(?:^|/)"
        try:
            self.regex: re.Pattern[str] | None = re.compile(prefix + translate(body) + "$")
        except re.error:
            self.regex = None  # rclone will judge it; the pre-scan just cannot use it

    def matches(self, relative: str, *, is_dir: bool) -> bool:
        if self.regex is None or (self.dir_only and not is_dir):
            return False
        return self.regex.search(relative) is not None


def translate(glob: str) -> str:
    out: list[str] = []
    depth = 0
    i, n = 0, len(glob)
    while i < n:
        ch = glob[i]
        if ch == "\\" and i + 1 < n:
            out.append(re.escape(glob[i + 1]))
            i += 2
        elif glob.startswith("{{", i):
            end = glob.find("}}", i + 2)
            if end < 0:
                raise re.error("unclosed {{")
            out.append("(?:" + glob[i + 2 : end] + ")")
            i = end + 2
        elif ch == "*":
            if glob.startswith("**", i):
                out.append(".*")
                i += 2
            else:
                out.append("[^/]*")
                i += 1
        elif ch == "?":
            out.append("[^/]")
            i += 1
        elif ch == "[":
            start = i + 1
            if glob.startswith("!", start):
                start += 1
            end = glob.find("]", start + 1)  # a "]" first in the class is a literal
            if end < 0:
                raise re.error("unclosed [")
            inner = glob[i + 1 : end]
            if inner.startswith("!"):
                inner = "^" + inner[1:]
            out.append("[" + inner.replace("\\", "\\\\") + "]")
            i = end + 1
        elif ch == "{":
            out.append("(?:")
            depth += 1
            i += 1
        elif ch == "," and depth:
            out.append("|")
            i += 1
        elif ch == "}" and depth:
            out.append(")")
            depth -= 1
            i += 1
        else:
            out.append(re.escape(ch))
            i += 1
    if depth:
        raise re.error("unclosed {")
    return "".join(out)


class Excludes:
    """The segment's exclude patterns, for the pre-scan to skip what will not be synced."""

    def __init__(self, patterns: tuple[str, ...] | list[str]) -> None:
        self.patterns = [Pattern(p) for p in patterns]

    def excludes(self, relative: str, *, is_dir: bool) -> bool:
        if relative == CHECK_FILENAME:
            return False
        return any(p.matches(relative, is_dir=is_dir) for p in self.patterns)
