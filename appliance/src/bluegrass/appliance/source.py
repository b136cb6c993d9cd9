"""Where histories and files come from: the cloud over HTTP and sftp, or a local data root.

A Source lists segments, says where git fetches each one from (and with which credentials),
and where rclone pulls its latest files from. The daemon does not care which one it has:

- HttpSource: the cloud's contract (bluegrass.core.httpspec) on its pinned HTTPS device port,
  plus its sync endpoint (sftp).
- LocalSource: a cloud data root on this machine (file:///DATA), for the embedded setup.
"""

from __future__ import annotations

import http.client
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bluegrass.appliance.errors import CloudRefused, CloudUnreachable
from bluegrass.core import httpspec, names, pinnedhttps
from bluegrass.core.enrollment import Enrollment
from bluegrass.core.errors import BluegrassError

_OID = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class Segment:
    user: str
    name: str
    git_url: str
    head: str | None

    @property
    def key(self) -> str:
        return f"{self.user}/{self.name}"


class Source(Protocol):
    description: str

    def segments(self) -> list[Segment]: ...

    def git_config(self) -> dict[str, str]:
        """Extra git configuration for fetching (credentials): given through the
        environment, never written into a repository."""
        ...

    def files_remote(self, segment: Segment) -> str:
        """rclone's source path for the segment's live files."""
        ...


class HttpSource:
    """The cloud's device port: HTTPS with the key pinned by the enrollment code.

    The device password goes in HTTP Basic, to the pinned side only: the segment list through
    bluegrass.core.pinnedhttps (the key is checked before the request is written), git with
    http.sslVerify off and http.pinnedPubkey on, both scoped to the cloud's URL. A code
    without a pin (made before the cloud had a device port) gives `side` None: nothing is
    sent, and every listing is refused with the way out.
    """

    def __init__(
        self, side: pinnedhttps.DeviceSide | None, enrollment: Enrollment, timeout: float
    ) -> None:
        self.side = side
        self.enrollment = enrollment
        self.timeout = timeout
        self.base_url = side.base if side is not None else ""
        self.description = self.base_url or f"{enrollment.server} (no pinned HTTPS port)"

    def _authorization(self) -> str:
        return pinnedhttps.basic_authorization(self.enrollment.user, self.enrollment.password)

    def segments(self) -> list[Segment]:
        if self.side is None:
            raise CloudRefused(
                "this appliance's enrollment code has no pinned HTTPS key (it was made before "
                "the cloud had a device port), so its password is sent nowhere and nothing is "
                "mirrored; enroll it again with a new code (`bluegrass-cloud device add USER`, "
                "then `bluegrass-appliance enroll CODE`)"
            )
        headers = {"Authorization": self._authorization(), "Accept": "application/json"}
        try:
            answer = pinnedhttps.get(
                self.side, httpspec.SEGMENTS_PATH, headers, self.timeout, limit=10 * 1024 * 1024
            )
        except pinnedhttps.PinMismatch as exc:
            raise CloudRefused(str(exc)) from None
        except (OSError, http.client.HTTPException) as exc:
            raise CloudUnreachable(f"cannot reach the cloud at {self.base_url}: {exc}") from None
        if answer.status in (401, 403):
            raise CloudRefused(
                f"the cloud at {self.base_url} refused this device's credentials "
                f"(HTTP {answer.status}); was it revoked? enroll it again"
            )
        if answer.status >= 500:
            raise CloudUnreachable(f"the cloud at {self.base_url} failed (HTTP {answer.status})")
        if answer.status != 200:
            raise BluegrassError(
                f"the cloud at {self.base_url} answered HTTP {answer.status} for the segment list"
            )
        return self._parse(answer.body)

    def _parse(self, body: bytes) -> list[Segment]:
        try:
            data = json.loads(body)
            listed = data["segments"]
            if data["user"] != self.enrollment.user or not isinstance(listed, list):
                raise ValueError("another user's listing")
            found = []
            for item in listed:
                name, git, head = item["name"], item["git"], item["head"]
                if not (isinstance(name, str) and names.is_valid(name)):
                    raise ValueError(f"bad segment name {name!r}")
                if git != httpspec.git_path(self.enrollment.user, name):
                    raise ValueError(f"unexpected git path {git!r}")
                if head is not None and not (isinstance(head, str) and _OID.fullmatch(head)):
                    raise ValueError(f"bad head {head!r}")
                found.append(Segment(self.enrollment.user, name, self.base_url + git, head))
        except (ValueError, KeyError, TypeError) as exc:
            raise BluegrassError(
                f"the cloud at {self.base_url} sent a segment list this version does not "
                f"understand ({exc})"
            ) from None
        return found

    def git_config(self) -> dict[str, str]:
        if self.side is None:
            return {}
        # All scoped to the cloud's URL, so the header never goes anywhere else and no other
        # server's certificate checks are touched. git's libcurl checks the key against the
        # pin after the handshake and before the request (curl's CURLOPT_PINNEDPUBLICKEY);
        # sslVerify is off because the certificate is self-signed: the pin is the whole check.
        # Redirects are not followed for the same reason.
        scope = f"http.{self.base_url}/"
        return {
            f"{scope}.sslVerify": "false",
            f"{scope}.pinnedPubkey": self.side.pin,
            f"{scope}.extraHeader": "Authorization: " + self._authorization(),
            "http.followRedirects": "false",
        }

    def files_remote(self, segment: Segment) -> str:
        # The sync endpoint jails the user in their own folder: the segment's path is its name.
        return f"{REMOTE_NAME}:{segment.name}"


REMOTE_NAME = "bluegrass-cloud"


class LocalSource:
    """A cloud data root on this machine: DATA/repos/<user>/<segment>.git, DATA/files/..."""

    def __init__(self, data: Path, user: str | None) -> None:
        self.data = data
        self.user = user
        self.description = f"file://{data}"

    def segments(self) -> list[Segment]:
        repos = self.data / "repos"
        if not repos.is_dir():
            raise CloudUnreachable(f"no cloud data root at {self.data} (no repos/ folder)")
        found = []
        users = [self.user] if self.user else sorted(p.name for p in repos.iterdir())
        for user in users:
            folder = repos / user
            if not names.is_valid(user) or not folder.is_dir():
                continue
            for repo in sorted(folder.glob("*.git")):
                name = repo.name[: -len(".git")]
                if names.is_valid(name):
                    found.append(Segment(user, name, f"file://{repo}", _local_head(repo)))
        return found

    def git_config(self) -> dict[str, str]:
        return {}

    def files_remote(self, segment: Segment) -> str:
        return str(self.data / "files" / segment.user / segment.name)


def _local_head(repo: Path) -> str | None:
    from bluegrass.core.store.git import git_env

    proc = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", "refs/heads/main^{commit}"],
        capture_output=True,
        env=git_env(repo),
        check=False,
    )
    head = proc.stdout.decode().strip()
    return head or None
