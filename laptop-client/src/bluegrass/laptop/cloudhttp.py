"""The laptop's requests to the cloud's HTTP side (bluegrass.core.httpspec), as its device.

The device's password goes in HTTP Basic, so it is sent only to the cloud's device port over
TLS, after the peer's key matched the pin of the enrollment code (bluegrass.core.pinnedhttps),
as the sync endpoint is trusted only after its SSH host key matched. A laptop enrolled with a
code that has no pin never sends it over HTTP: its syncs simply run in full.

Every failure of `segment_state` is None: those answers only ever let a sync skip work.
`credential` tells a refused sftp login's causes apart, for the message the user reads.
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any

from bluegrass.core import httpspec, pinnedhttps
from bluegrass.core.treestate import TreeState
from bluegrass.laptop.settings import Settings

# The cloud walks the segment's folder before it answers: a few seconds for a million files.
TIMEOUT = 30.0
# Asking whether the password is good is one small request; a sync is waiting to report.
CHECK_TIMEOUT = 10.0

ACCEPTED = "accepted"
REFUSED = "refused"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Verdict:
    """What the device side said of this device's password: ACCEPTED, REFUSED or UNKNOWN
    (with why it cannot tell)."""

    kind: str
    why: str = ""


class CloudHTTP:
    def __init__(self, settings: Settings) -> None:
        self.side = settings.device_side
        self.user = settings.server["user"]
        self.password_file = settings.places.device_password

    def usable(self) -> bool:
        return self.side is not None and self.password_file.is_file()

    def segment_state(self, segment: str) -> TreeState | None:
        """The cloud's live folder of `segment`, as bluegrass.core.treestate sees it there."""
        data = self._get_json(httpspec.state_path(segment))
        if not isinstance(data, dict) or data.get("segment") != segment:
            return None
        return TreeState.from_json(data.get("state"))

    def credential(self) -> Verdict:
        """Whether the cloud accepts this device's password, asked on the pinned device side
        (the segment list: the smallest route that authenticates as the device)."""
        if self.side is None:
            return Verdict(
                UNKNOWN,
                "this computer was enrolled with a code made before the "
                "cloud had a pinned HTTPS port",
            )
        try:
            answer = self._get(httpspec.SEGMENTS_PATH, timeout=CHECK_TIMEOUT)
        except pinnedhttps.PinMismatch as exc:
            return Verdict(UNKNOWN, str(exc))
        except (OSError, http.client.HTTPException) as exc:
            return Verdict(UNKNOWN, f"its HTTPS port did not answer ({exc})")
        if answer is None:
            return Verdict(UNKNOWN, "this computer has no device-password file")
        if answer.status == 200:
            return Verdict(ACCEPTED)
        if answer.status == 401:
            return Verdict(REFUSED)
        return Verdict(UNKNOWN, f"its HTTPS port answered HTTP {answer.status}")

    def _get(self, path: str, timeout: float) -> pinnedhttps.Answer | None:
        """GET `path` as the device, or None without a pin or password. Raises what
        pinnedhttps.get raises."""
        if self.side is None:
            return None
        try:
            password = self.password_file.read_text(encoding="utf-8").strip()
        except OSError:
            return None
        headers = {
            "Authorization": pinnedhttps.basic_authorization(self.user, password),
            "Accept": "application/json",
        }
        return pinnedhttps.get(self.side, path, headers, timeout, limit=1 << 20)

    def _get_json(self, path: str) -> Any:
        try:
            answer = self._get(path, TIMEOUT)
        except (pinnedhttps.PinMismatch, OSError, http.client.HTTPException):
            return None
        if answer is None or answer.status != 200:
            return None
        try:
            return json.loads(answer.body)
        except ValueError:
            return None
