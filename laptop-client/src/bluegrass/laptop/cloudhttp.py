"""The laptop's requests to the cloud's HTTP side (bluegrass.core.httpspec), as its device.

Only what the sync itself may use, and only when it is safe to: the device's password goes
in HTTP Basic, so it is never sent over plain http beyond this machine or a home network
(enrollment.in_clear_beyond_lan); a cloud reached that way answers nothing here and syncs
simply run in full. Every failure is None: these answers only ever let a sync skip work, or
(the quota, decision 133) stop one before it sends what the cloud would refuse.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Any

from bluegrass.core import enrollment, httpspec
from bluegrass.core.treestate import TreeState
from bluegrass.laptop.settings import Settings

# The cloud walks the segment's folder before it answers: a few seconds for a million files.
TIMEOUT = 30.0


class CloudHTTP:
    def __init__(self, settings: Settings) -> None:
        self.base = settings.http_base
        self.user = settings.server["user"]
        self.password_file = settings.places.device_password

    def usable(self) -> bool:
        return not enrollment.in_clear_beyond_lan(self.base) and self.password_file.is_file()

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
        if not self.usable():
            return None
        try:
            password = self.password_file.read_text(encoding="utf-8").strip()
        except OSError:
            return None
        token = base64.b64encode(f"{self.user}:{password}".encode()).decode()
        # The base is http(s) only: the settings' schema checks it (config.is_http_base).
        request = urllib.request.Request(  # noqa: S310
            self.base + path,
            headers={"Authorization": f"Basic {token}", "Accept": "application/json"},
        )
        # No proxy from the environment: the answer decides what a sync may skip, and the
        # password is for the cloud alone.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=TIMEOUT) as response:
                if response.status != 200:
                    return None
                return json.loads(response.read(1 << 20))
        except (urllib.error.URLError, OSError, ValueError):
            return None
