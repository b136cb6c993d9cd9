"""Where histories and files come from: the cloud over HTTP and sftp, or a local data root.

A Source lists segments, says where git fetches each one from (and with which credentials),
and where rclone pulls its latest files from. The daemon does not care which one it has:

- HttpSource: the cloud's contract (bluegrass.core.httpspec) plus its sync endpoint (sftp).
- LocalSource: a cloud data root on this machine (file:///DATA), for the embedded setup.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bluegrass.appliance.errors import CloudRefused, CloudUnreachable
from bluegrass.core import httpspec, names
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
    def __init__(self, base_url: str, enrollment: Enrollment, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.enrollment = enrollment
        self.timeout = timeout
        self.description = self.base_url

    def _authorization(self) -> str:
        pair = f"{self.enrollment.user}:{self.enrollment.password}".encode()
        return "Basic " + base64.b64encode(pair).decode()

    def segments(self) -> list[Segment]:
        url = self.base_url + httpspec.SEGMENTS_PATH
        # The base URL is checked to be http(s) by the config schema or built from the
        # enrollment; never a file: URL.
        request = urllib.request.Request(  # noqa: S310
            url, headers={"Authorization": self._authorization()}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                body = response.read(10 * 1024 * 1024)
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise CloudRefused(
                    f"the cloud at {self.base_url} refused this device's credentials "
                    f"(HTTP {exc.code}); was it revoked? enroll it again"
                ) from None
            if exc.code >= 500:
                raise CloudUnreachable(
                    f"the cloud at {self.base_url} failed (HTTP {exc.code})"
                ) from None
            raise BluegrassError(
                f"the cloud at {self.base_url} answered HTTP {exc.code} for the segment list"
            ) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CloudUnreachable(f"cannot reach the cloud at {self.base_url}: {reason}") from None
        return self._parse(body)

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
        # Scoped to the cloud's URL, so the header never goes anywhere else; redirects are not
        # followed for the same reason.
        return {
            f"http.{self.base_url}/.extraHeader": "Authorization: " + self._authorization(),
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
