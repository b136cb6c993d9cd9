"""Conventions the laptop, the cloud and the Pi must agree on for syncing files.

Laptop segment LOCAL <-> sync endpoint path "<segment>" (the endpoint jails each user in
DATA/files/<user>/, so the remote path is just the segment's name).
"""

from __future__ import annotations

import re

# rclone uploads into "<name>.<8 hex>" + this suffix, then renames into place. Ours, not the
# default ".partial": a user's own "x.partial" must still be backed up. Only names of exactly
# this shape are in-flight uploads; the snapshot leaves them out and says so. rclone refuses a
# suffix longer than 16 characters.
PARTIAL_SUFFIX = ".bluegrass-part"
PARTIAL_NAME = re.compile(rb".*\.[0-9a-f]{8}" + re.escape(PARTIAL_SUFFIX.encode()))

# bisync --check-access sentinel, present on both sides of every segment: a missing or
# unmounted folder on either side then aborts the run instead of looking like mass deletion.
CHECK_FILENAME = ".bluegrass-check"

# Put by `bluegrass-cloud rebuild --from-replica` in each segment's sidecar folder
# (.bluegrass-meta/, which devices fetch before every sync and bisync never copies): the live
# tree is the last snapshot, older than what devices saw there, and holds no check file. A
# device finding its check file missing on the cloud beside this mark copies both ways once
# (a resync, which deletes nothing) instead of stopping (decision 161).
REBUILT_FILENAME = "rebuilt"


def is_partial_upload(name: bytes) -> bool:
    return PARTIAL_NAME.fullmatch(name) is not None
