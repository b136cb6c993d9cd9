"""The cloud's HTTP interface as the Pi (and any other reader) uses it.

Base URL: http://<enrollment.server>:<enrollment.http_port>
Authentication: HTTP Basic, user = the user's name, password = the device's password
("device.secret", bluegrass.core.enrollment.Enrollment.password). A revoked device, a wrong
password or another user's name gets 401; a repository of another user gets 404, the same
as one that does not exist, so names do not leak.

    GET  /api/v1/segments
         200 {"user": "alice",
              "segments": [{"name": "docs", "git": "/git/alice/docs.git", "head": "<40 hex>"|null}]}
    GET  /api/v1/segments/<segment>/state
         200 {"segment": "docs", "state": {"digest": "<64 hex>", "entries": 78000, "racy": false}}
         the live folder's state (bluegrass.core.treestate), which a laptop compares with the
         state at its last sync that found nothing to do; 404 if the folder does not exist
    GET  /api/v1/quota
         200 {"user": "alice", "quota": 500000|null, "used": 812345, "files": 800000,
              "history": 12345, "remaining": 0|null, "over": true, "read_only": false,
              "measured": <epoch s>}
         the user's storage quota and their use against it (live files and histories, in
         bytes), measured as the request is answered; `read_only`: files grew while over it,
         so the sync endpoint takes no changes (decision 132); a laptop asks before and after
         a sync that changed something (decision 133)
    GET  /git/<user>/<segment>.git/info/refs?service=git-upload-pack     (git smart HTTP,
    POST /git/<user>/<segment>.git/git-upload-pack                        read-only, protocol v2)
         git-receive-pack and dumb-HTTP file reads are refused (403).
"""

from __future__ import annotations

SEGMENTS_PATH = "/api/v1/segments"
GIT_PREFIX = "/git/"
STATE_SUFFIX = "/state"
QUOTA_PATH = "/api/v1/quota"


def state_path(segment: str) -> str:
    return f"{SEGMENTS_PATH}/{segment}{STATE_SUFFIX}"


def git_path(user: str, segment: str) -> str:
    return f"{GIT_PREFIX}{user}/{segment}.git"
