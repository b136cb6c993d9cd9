"""What the client remembers between runs: one small JSON file per segment, plus the daemon's.

STATE/segments/<segment>/state.json   last run, outcome, consecutive failures, scan findings,
                                      both sides' state before the last quiet sync
STATE/segments/<segment>/bisync/      rclone bisync's --workdir (listings, lock)
STATE/segments/<segment>/filters.txt  the --filters-file (rclone keeps filters.txt.md5 beside)
STATE/segments/<segment>/last.log     rclone's JSON log of the last run
STATE/segments/<segment>/replaced/<UTC time>/
                                      this computer's files a resync replaced by the cloud's
                                      newer copies (bisync's --backup-dir1), kept
STATE/daemon.json                     the running daemon's pid and each segment's next run
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from bluegrass.laptop.paths import Places
from bluegrass.laptop.settings import write_atomic

VERSION = 1


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class LastRun:
    started: str
    finished: str
    outcome: str  # ok | retry | needs-user | locked-out
    message: str
    action: str | None = None  # what the user should do, in words
    command: str | None = None  # the exact command that does it
    resync: bool = False
    exit_code: int | None = None
    files_transferred: int = 0
    bytes_transferred: int = 0
    deletes: int = 0
    conflicts: int = 0
    bisync: bool = True  # False: both sides were unchanged since a quiet sync, so it was skipped


@dataclass
class SegmentState:
    established: bool = False  # a first sync (--resync) has completed for this pairing
    failures: int = 0  # consecutive runs that did not end "ok"
    last_run: LastRun | None = None
    last_ok: str | None = None
    unsyncable: list[dict[str, str]] = field(default_factory=list)
    warnings: list[dict[str, str]] = field(default_factory=list)
    listings_checked: str | None = None  # the last run that compared both sides' listings
    # Both sides' state (bluegrass.laptop.unchanged.Sides as JSON) taken before the last sync
    # that ended "ok" having changed nothing; None when there is none to trust.
    settled: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["version"] = VERSION
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SegmentState:
        last = data.get("last_run")
        return cls(
            established=bool(data.get("established", False)),
            failures=int(data.get("failures", 0)),
            last_run=LastRun(**last) if isinstance(last, dict) else None,
            last_ok=data.get("last_ok"),
            unsyncable=list(data.get("unsyncable", [])),
            warnings=list(data.get("warnings", [])),
            listings_checked=data.get("listings_checked"),
            settled=data["settled"] if isinstance(data.get("settled"), dict) else None,
        )


class SegmentFiles:
    def __init__(self, places: Places, segment: str) -> None:
        self.dir = places.segment_state(segment)
        self.state_file = self.dir / "state.json"
        self.workdir = self.dir / "bisync"
        self.filters = self.dir / "filters.txt"
        self.log = self.dir / "last.log"
        self.lock = self.dir / "sync.lock"
        self.scan_memo = self.dir / "scan-memo.json"

    def load(self) -> SegmentState:
        try:
            data = json.loads(self.state_file.read_text(encoding="utf-8"))
            return SegmentState.from_json(data)
        except (OSError, ValueError, TypeError):
            # Missing or damaged: start afresh. The bisync listings, not this file, decide
            # whether a sync can continue without a --resync.
            return SegmentState()

    def save(self, state: SegmentState) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        text = json.dumps(state.to_json(), indent=2, sort_keys=True, ensure_ascii=False)
        write_atomic(self.state_file, text + "\n", private=False)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def load_daemon_info(places: Places) -> dict[str, Any]:
    try:
        data = json.loads(places.daemon_info.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_daemon_info(places: Places, info: dict[str, Any]) -> None:
    text = json.dumps(info, indent=2, sort_keys=True)
    write_atomic(places.daemon_info, text + "\n", private=False)


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None
