"""Enrolling the appliance: the cloud, the user and this device's secret, from one code."""

from __future__ import annotations

from bluegrass.appliance import settings
from bluegrass.appliance.context import Appliance
from bluegrass.core.enrollment import Enrollment


def unpinned_warning(found: Enrollment) -> str | None:
    """Given a decoded code, return why the appliance will not mirror with it, or None."""
    if found.device_side is not None:
        return None
    return (
        "this code has no pinned HTTPS key (it was made before the cloud had a device port): "
        "the appliance will not send its password and mirrors nothing; make a new code with "
        "`bluegrass-cloud device add USER` and enroll with it"
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
