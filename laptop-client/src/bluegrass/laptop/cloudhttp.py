"""The laptop's requests to the cloud's HTTP side (bluegrass.core.httpspec), as its device.

Only what the sync itself may use, and only when it is safe to: the device's password goes
in HTTP Basic, so it is sent only to the cloud's device port, after the peer's TLS key matched
the enrollment code's pin (bluegrass.core.pinnedhttps), as the sync endpoint is trusted only
after its SSH host key matched. A laptop enrolled with a code without a pin sends it nowhere
over HTTP, and its syncs simply run in full. Every failure is None: these answers only ever
let a sync skip work, or (the quota, decision 133) stop one before it sends what the cloud
would refuse.
"""

from __future__ import annotations

import http.client
import json
from typing import Any

from bluegrass.core import httpspec, pinnedhttps
from bluegrass.core.treestate import TreeState
from bluegrass.laptop.settings import Settings

# The cloud walks the segment's folder before it answers: a few seconds for a million files.
TIMEOUT = 30.0


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

    def quota(self) -> dict[str, Any] | None:
        """This user's storage quota and use on the cloud, in bytes (httpspec.QUOTA_PATH)."""
        data = self._get_json(httpspec.QUOTA_PATH)
        return data if isinstance(data, dict) and data.get("user") == self.user else None

    def _get_json(self, path: str) -> Any:
        if not self.usable() or self.side is None:
            return None
        try:
            password = self.password_file.read_text(encoding="utf-8").strip()
        except OSError:
            return None
        headers = {
            "Authorization": pinnedhttps.basic_authorization(self.user, password),
            "Accept": "application/json",
        }
        # Sent only if the peer has the pinned key; no proxy from the environment, no redirect.
        try:
            answer = pinnedhttps.get(self.side, path, headers, TIMEOUT, limit=1 << 20)
            if answer.status != 200:
                return None
            return json.loads(answer.body)
        except (pinnedhttps.PinMismatch, OSError, http.client.HTTPException, ValueError):
            return None
