"""Words for outcomes: the lines `sync`, `run` and `status` print."""

from __future__ import annotations

from bluegrass.laptop.bisync import LOCKED_OUT, NEEDS_USER, OK, RETRY, UNCHANGED, Outcome
from bluegrass.laptop.progress import human_bytes

LABELS = {OK: "ok", RETRY: "will retry", NEEDS_USER: "needs you", LOCKED_OUT: "locked out"}

# `bluegrass sync` exits with the worst outcome among the segments it synced.
EXIT_CODES = {OK: 0, RETRY: 1, NEEDS_USER: 3, LOCKED_OUT: 4}
SEVERITY = {OK: 0, RETRY: 1, NEEDS_USER: 2, LOCKED_OUT: 3}


def moved(files: int, size: int, deletes: int, conflicts: int, bisync: bool = True) -> str:
    if not bisync:
        return UNCHANGED
    parts = []
    if files:
        parts.append(f"{files} file{'s' if files != 1 else ''} ({human_bytes(size)}) copied")
    if deletes:
        parts.append(f"{deletes} deleted")
    if conflicts:
        parts.append(
            f"{conflicts} conflict cop{'ies' if conflicts != 1 else 'y'} kept (both versions)"
        )
    return ", ".join(parts) if parts else "nothing to copy"


def outcome_lines(segment: str, outcome: Outcome) -> list[str]:
    label = LABELS[outcome.kind]
    if outcome.kind == OK:
        counts = moved(
            outcome.files_transferred,
            outcome.bytes_transferred,
            outcome.deletes,
            len(outcome.conflict_files),
            outcome.bisync,
        )
        lines = [f"{segment}: {label}: {counts}"]
    else:
        lines = [f"{segment}: {label}: {outcome.message}"]
    lines += [f"  note: {note}" for note in outcome.notes]
    if outcome.conflict_files:
        shown = ", ".join(outcome.conflict_files[:10])
        more = len(outcome.conflict_files) - 10
        lines.append(f"  conflict copies: {shown}" + (f" and {more} more" if more > 0 else ""))
    if outcome.unsyncable:
        count = len(outcome.unsyncable)
        lines.append(f"  cannot be synced ({count}; `bluegrass status` lists them all):")
        lines += [f"    {u['path']}: {u['kind']}" for u in outcome.unsyncable[:10]]
    if outcome.action:
        lines.append(f"  to do: {outcome.action}" + (":" if outcome.command else ""))
    if outcome.command:
        lines.append(f"    {outcome.command}")
    return lines


def error_line(segment: str, outcome: Outcome) -> str:
    """The one stderr line for a segment that did not sync."""
    text = f"{segment}: {LABELS[outcome.kind]}: {outcome.message}"
    if outcome.command:
        text += f"; run `{outcome.command}`"
    return " ".join(text.split())
