"""Whether the cloud accepts a device's password, asked on its pinned device port.

rclone's "unable to authenticate" does not say why the sync endpoint refused a login: a wrong
or revoked password, or a refusal for another reason (a lock-out, a busy server). The device
port, asked with the same password, tells those apart (decision 118): 200 is ACCEPTED, 401 is
REFUSED, and anything else, a key other than the pinned one, no answer or no pin is UNKNOWN,
with why. The password goes only where bluegrass.core.pinnedhttps sends it: to the pinned key.
"""

from __future__ import annotations

import http.client
from dataclasses import dataclass

from bluegrass.core import httpspec, pinnedhttps
from bluegrass.laptop.settings import Settings

# One small request, while a sync or an enrollment waits to report.
TIMEOUT = 10.0

ACCEPTED = "accepted"
REFUSED = "refused"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Verdict:
    """ACCEPTED, REFUSED or UNKNOWN, with why it cannot be told (UNKNOWN only)."""

    kind: str
    why: str = ""


def ask(side: pinnedhttps.DeviceSide | None, user: str, password: str) -> Verdict:
    """What the device port says of `user`'s `password`, asked for the segment list (the
    smallest route that authenticates as a device)."""
    if side is None:
        return Verdict(
            UNKNOWN,
            "the enrollment code was made before the cloud had a pinned HTTPS port",
        )
    headers = {
        "Authorization": pinnedhttps.basic_authorization(user, password),
        "Accept": "application/json",
    }
    try:
        answer = pinnedhttps.get(side, httpspec.SEGMENTS_PATH, headers, TIMEOUT, limit=1 << 20)
    except pinnedhttps.PinMismatch as exc:
        return Verdict(UNKNOWN, str(exc))
    except (OSError, http.client.HTTPException) as exc:
        return Verdict(UNKNOWN, f"its HTTPS port did not answer ({exc})")
    if answer.status == 200:
        return Verdict(ACCEPTED)
    if answer.status == 401:
        return Verdict(REFUSED)
    return Verdict(UNKNOWN, f"its HTTPS port answered HTTP {answer.status}")


def of_settings(settings: Settings) -> Verdict:
    """The verdict on this computer's own password (the device-password file)."""
    try:
        password = settings.places.device_password.read_text(encoding="utf-8").strip()
    except OSError:
        return Verdict(UNKNOWN, "this computer has no device-password file")
    return ask(settings.device_side, settings.server["user"], password)
