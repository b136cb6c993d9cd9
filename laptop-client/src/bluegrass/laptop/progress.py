"""Showing a sync as it runs: a one-line bar on a terminal, plain lines anywhere else.

Both read rclone's periodic stats (`--use-json-log --stats 1s --stats-log-level NOTICE`): each
stats record carries bytes, totalBytes, transfers, totalTransfers, speed and eta.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import Any, TextIO

from bluegrass.laptop.runner import LogRecord


def human_bytes(count: float) -> str:
    size = float(count)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(size) < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def _eta(seconds: Any) -> str:
    if not isinstance(seconds, int | float) or seconds < 0:
        return ""
    seconds = int(seconds)
    if seconds >= 3600:
        return f" ETA {seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f" ETA {seconds // 60}m{seconds % 60:02d}s"
    return f" ETA {seconds}s"


def describe(stats: dict[str, Any], *, compact: bool = False) -> tuple[float | None, str]:
    done = int(stats.get("bytes") or 0)
    total = int(stats.get("totalBytes") or 0)
    files = int(stats.get("transfers") or 0)
    total_files = int(stats.get("totalTransfers") or 0)
    speed = float(stats.get("speed") or 0)
    share = done / total if total else None
    if compact:
        text = f"{human_bytes(done)}/{human_bytes(total)} {files}/{total_files} files"
    else:
        text = f"{human_bytes(done)} of {human_bytes(total)}, {files} of {total_files} files"
    if speed:
        text += f", {human_bytes(speed)}/s"
    return share, text + _eta(stats.get("eta"))


class Progress:
    """Receives rclone's log records; shows the stats."""

    def __init__(self, label: str, stream: TextIO | None = None, *, plain_every: float = 5.0):
        self.label = label
        self.stream = stream or sys.stderr
        self.terminal = self.stream.isatty()
        self.plain_every = plain_every
        self._last_plain = 0.0
        self._last_text = ""
        self._drawn = False

    def __call__(self, record: LogRecord) -> None:
        if record.stats is None:
            return
        share, text = describe(record.stats, compact=self.terminal)
        if not int(record.stats.get("totalBytes") or 0) and not int(
            record.stats.get("totalTransfers") or 0
        ):
            return  # nothing to move (yet): stay quiet
        if self.terminal:
            self._draw(share, text)
        else:
            now = time.monotonic()
            if text != self._last_text and now - self._last_plain >= self.plain_every:
                self.stream.write(f"{self.label}: {text}\n")
                self.stream.flush()
                self._last_plain = now
                self._last_text = text

    def _draw(self, share: float | None, text: str) -> None:
        width = shutil.get_terminal_size((80, 24)).columns
        bar_width = 20
        filled = round((share or 0) * bar_width)
        percent = f"{share * 100:3.0f}%" if share is not None else "  ?%"
        line = f"{self.label} [{'#' * filled}{'.' * (bar_width - filled)}] {percent} {text}"
        line = line[: max(width - 1, 10)]
        self.stream.write("\r" + line.ljust(max(width - 1, 10)))
        self.stream.flush()
        self._drawn = True

    def finish(self) -> None:
        if self._drawn:
            width = shutil.get_terminal_size((80, 24)).columns
            self.stream.write("\r" + " " * max(width - 1, 10) + "\r")
            self.stream.flush()
            self._drawn = False
