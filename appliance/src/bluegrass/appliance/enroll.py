"""Enrolling the appliance: the cloud, the user and this device's secret, from one code."""

from __future__ import annotations

from bluegrass.appliance import settings
from bluegrass.appliance.context import Appliance
from bluegrass.core import enrollment
from bluegrass.core.enrollment import Enrollment


def cleartext_warning(base: str) -> str | None:
    """Given the cloud's web address, return why this device's password would cross a network
    in clear there, or None."""
    if not enrollment.in_clear_beyond_lan(base):
        return None
    return (
        f"the cloud's web side is plain http ({base}): this device's password would cross the "
        "network in clear. Put a TLS proxy in front of it and set [server] public_url on the "
        "cloud (docs/deploy.md), then enroll with a new code; or set [cloud] url here"
    )


def enroll(app: Appliance, code: str) -> Enrollment:
    """Given the appliance and an enrollment code, store the code (0600), write the commented
    default settings if there are none, and return the code's contents. Raise UsageError for
    a bad code, before anything is written.

    Used by `enroll` and by the panel's first-run setup."""
    found = app.save_enrollment(code)
    if not app.paths.config.exists():
        app.paths.config.write_text(settings.default_text())
    return found
