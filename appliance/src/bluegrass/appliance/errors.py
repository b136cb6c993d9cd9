"""Failures the appliance tells apart, because the daemon reacts to each differently."""

from __future__ import annotations

import errno

from bluegrass.core.errors import BluegrassError


class CloudUnreachable(BluegrassError):
    """The cloud did not answer (network, DNS, refused, 5xx): back off and try again."""


class CloudRefused(BluegrassError):
    """The cloud answered but refused this device (401/403): re-enrollment is needed."""


class DriveError(BluegrassError):
    """The drive failed under a job: I/O errors, read-only, gone. The daemon checks it."""


class DriveFull(DriveError):
    """No space left on the drive. Nothing already mirrored is lost; the job is retried later."""


class DriveMissing(DriveError):
    """No usable backup drive is mounted."""


class Cancelled(BluegrassError):
    """The job was stopped: the daemon is shutting down or the drive went away."""


# Errors from the file system that mean "the drive itself is in trouble", not "this one file".
DRIVE_ERRNOS = {errno.EIO, errno.EROFS, errno.ENODEV, errno.ENXIO, errno.EUCLEAN, errno.ENOTCONN}


def from_os_error(exc: OSError, where: str) -> BluegrassError:
    """Turn an OSError on the drive into the error the daemon acts on."""
    if exc.errno == errno.ENOSPC or exc.errno == errno.EDQUOT:
        return DriveFull(f"the drive is full ({where})")
    if exc.errno in DRIVE_ERRNOS:
        return DriveError(f"the drive failed ({where}: {exc.strerror})")
    return BluegrassError(f"{where}: {exc.strerror}")


# Messages of git and rclone (run with LC_ALL=C) that mean the same things.
DRIVE_FULL_TEXT = (
    "no space left on device",
    "disk quota exceeded",
    # rclone reserves each file's size before copying it (decision 74)
    "file too big for remaining disk space",
)
DRIVE_FAILED_TEXT = (
    "input/output error",
    "read-only file system",
    "structure needs cleaning",
    "no such device",
    "transport endpoint is not connected",
)


def classify_drive_text(text: str, where: str) -> BluegrassError | None:
    lowered = text.lower()
    if any(t in lowered for t in DRIVE_FULL_TEXT):
        return DriveFull(f"the drive is full ({where})")
    if any(t in lowered for t in DRIVE_FAILED_TEXT):
        return DriveError(f"the drive failed ({where}: {_first_match(lowered)})")
    return None


def _first_match(lowered: str) -> str:
    return next((t for t in DRIVE_FAILED_TEXT if t in lowered), "I/O error")
