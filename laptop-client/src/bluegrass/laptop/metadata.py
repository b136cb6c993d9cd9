"""This computer's side of the metadata sidecars (bluegrass.core.syncmeta, decision 59).

rclone bisync carries the files; the permission bits, nanosecond mtimes and entry kinds it
cannot carry go in sidecars beside them, never in the person's folder:

- before each bisync, the laptop describes its folder into its own sidecar
  (STATE/segments/NAME/meta/own.meta) and, if that differs from the copy on the cloud, uploads
  it as `NAME/.bluegrass-meta/<device>-<install>.meta` (bisync itself is told to leave that
  folder alone);
- after each bisync, it fetches every device's sidecar (STATE/segments/NAME/meta/cloud/) and
  gives every entry the bits and time of the latest record that describes it, taking those
  records into its own sidecar with the time of the change it took over.

The file name carries a random id made once per installation, so two computers enrolled with
the same code never write one sidecar.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from bluegrass.core import syncmeta, syncspec
from bluegrass.core.syncmeta import Record, Sidecars
from bluegrass.laptop import remote
from bluegrass.laptop.runner import Rclone
from bluegrass.laptop.settings import write_atomic

_SAFE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_INSTALL = re.compile(r"[0-9a-f]{8}")
REMOTE_FOLDER = os.fsdecode(syncmeta.FOLDER)
# The bisync rule that leaves the sidecars to this module: --exclude, not the filters file, so
# adding it needs no --resync (decision 20).
EXCLUDE = f"/{REMOTE_FOLDER}/**"


def install_id(state_dir: Path) -> str:
    """A random id for this installation, made once (STATE/install-id)."""
    path = state_dir / "install-id"
    try:
        found = path.read_text(encoding="utf-8").strip()
        if _INSTALL.fullmatch(found):
            return found
    except OSError:
        pass
    made = secrets.token_hex(4)
    write_atomic(path, made + "\n", private=False)
    return made


@dataclass
class Exchanged:
    applied: int = 0  # local entries given another device's bits or time
    problems: list[str] = field(default_factory=list)  # each one line, for the run's notes
    failed: bool = False  # the sidecar could not reach the cloud: the run must be retried
    uploaded: bool = False  # the cloud's folder changed: a state taken before is stale


class SegmentSidecar:
    def __init__(
        self, folder: Path, segment: str, meta_dir: Path, name: str, rclone: Rclone
    ) -> None:
        self.folder = folder
        self.segment = segment
        self.own = meta_dir / "own.meta"
        # The own records as they were after the last sync that ended well: what both sides
        # then held (bluegrass.laptop.hidden compares with it).
        self.synced_file = meta_dir / "synced.meta"
        self.taken = meta_dir / "taken.json"  # the others' sidecars last put back: name → stat
        self.fetched = meta_dir / "cloud"
        self.name = name
        self.rclone = rclone
        self.current: dict[bytes, Record] = {}  # this folder as `send` described it
        self.sidecars: Sidecars | None = None  # every device's, as `fetch` found them
        self.others_changed = True  # another device's sidecar changed in this fetch

    @classmethod
    def for_device(
        cls, folder: Path, segment: str, meta_dir: Path, device: str, state_dir: Path, rc: Rclone
    ) -> SegmentSidecar:
        who = device if _SAFE.fullmatch(device) else "device"
        return cls(folder, segment, meta_dir, f"{who}-{install_id(state_dir)}", rc)

    @property
    def remote_file(self) -> str:
        return f"{remote.remote_path(self.segment)}/{REMOTE_FOLDER}/{self.name}{syncmeta.SUFFIX}"

    def _own_records(self) -> dict[bytes, Record]:
        return syncmeta.read(self.own)  # none yet, or damaged: every entry is described afresh

    def synced(self) -> dict[bytes, Record]:
        return syncmeta.read(self.synced_file)

    def send(self) -> Exchanged:
        """Describe the folder into this device's sidecar; upload it if the cloud's differs."""
        out = Exchanged()
        try:
            self.current = syncmeta.describe(self.folder, self._own_records(), time.time_ns())
            data = syncmeta.serialize(self.current)
            syncmeta.write_data(self.own, data)
            if _same_bytes(self.fetched / f"{self.name}{syncmeta.SUFFIX}", data):
                return out
        except OSError as exc:
            out.problems.append(
                f"could not record permission bits and times: {exc.strerror or exc}"
            )
            out.failed = True
            return out
        # Uploaded under a partial name and renamed into place: the cloud's commit never
        # reads half a sidecar, and the cloud's state sees a new inode (treestate).
        partial = ["--partial-suffix", syncspec.PARTIAL_SUFFIX]
        proc = self.rclone.run(["copyto", str(self.own), self.remote_file, *partial])
        if proc.returncode != 0:
            out.problems.append(
                "could not send permission bits and times to the cloud: "
                f"{_last_line(proc.stderr)}; the next sync sends them"
            )
            out.failed = True
        out.uploaded = True  # even a failed copy may have left a file behind
        return out

    def fetch(self) -> Exchanged:
        """Every device's sidecar, from the cloud (before the bisync: bluegrass.laptop.hidden
        needs them, and they were uploaded before the files they describe)."""
        out = Exchanged()
        source = f"{remote.remote_path(self.segment)}/{REMOTE_FOLDER}"
        proc = self.rclone.run(["sync", source, str(self.fetched), "--checkers", "4"])
        if proc.returncode not in (0, 3):  # 3: "directory not found", no sidecar yet
            out.problems.append(
                "could not fetch permission bits and times from the cloud: "
                f"{_last_line(proc.stderr)}; the next sync fetches them"
            )
            out.failed = True
            return out
        self.others_changed = self._others_on_disk() != _read_json(self.taken)
        self.sidecars = Sidecars.read(self.fetched)
        return out

    def _others_on_disk(self) -> dict[str, list[int]]:
        """The other devices' fetched sidecars: name → [size, mtime]."""
        mine = f"{self.name}{syncmeta.SUFFIX}"
        try:
            found = {p.name: p.stat() for p in self.fetched.iterdir() if p.name != mine}
        except OSError:
            return {}
        return {name: [st.st_size, st.st_mtime_ns] for name, st in found.items()}

    def receive(self, *, moved: bool) -> Exchanged:
        """Put the fetched sidecars' bits and times on this folder; remember this sync.

        `moved`: the bisync copied or renamed something. When it did not and no other
        device's sidecar changed, nothing here can take another record: not even looked at.
        """
        out = Exchanged()
        if self.sidecars is None:
            return out  # the fetch failed and said so
        own = self.current
        try:
            if not moved and not self.others_changed:
                syncmeta.write_data(self.synced_file, self.own.read_bytes())
                return out
            others = self._others_on_disk()
            sidecars = self.sidecars
            sidecars.tables[self.name] = own  # ours as it is here, not as last uploaded
            applied = syncmeta.apply(self.folder, sidecars, own=self.name)
        except OSError as exc:
            out.problems.append(f"could not put back permission bits and times: {exc}")
            return out
        out.applied = applied.entries
        out.problems += [
            f"could not set the permission bits or time of {path}: {why}"
            for path, why in applied.failed
        ]
        out.problems += [
            f"the cloud's metadata file {name} was not read: {why}"
            for name, why in sidecars.problems
        ]
        own.update(applied.adopted)
        try:
            data = syncmeta.serialize(own)
            syncmeta.write_data(self.own, data)  # sent with the next sync
            syncmeta.write_data(self.synced_file, data)
            # Only once they are put back: a run that fails before this looks again.
            write_atomic(self.taken, json.dumps(others, sort_keys=True) + "\n", private=False)
        except OSError as exc:
            out.problems.append(f"could not record permission bits and times: {exc}")
        return out


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _same_bytes(path: Path, data: bytes) -> bool:
    try:
        return path.stat().st_size == len(data) and path.read_bytes() == data
    except OSError:
        return False


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no message"
