"""What a recovery kit says, as data: built from the data root, rendered by kit.pdf.

A user's kit holds what opens that user's area of the replica (DATA/replica/keys/USER.json)
and where the bucket is; the administrator's holds DATA/replica/admin.json, which opens the
server's area and so every user's secrets. Neither holds a web password.

The S3 key printed (decision 171): [replica] kit_access_key_id when set (a read-only key made
for the kit); without it a user's kit prints none and says whom to ask, since the server's own
key writes to every user's area, and the administrator's kit prints the server's key, which
its reader holds anyway, saying what it can do.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from shlex import quote

from bluegrass.cloud import settings
from bluegrass.cloud.accounts import Accounts
from bluegrass.cloud.datadir import DataRoot
from bluegrass.cloud.kit import replicasteps
from bluegrass.cloud.replica import keys
from bluegrass.cloud.replica.settings import ReplicaSettings, from_config
from bluegrass.core import recoverysteps
from bluegrass.core.enrollment import http_base
from bluegrass.core.recoverysteps import Step


@dataclass(frozen=True)
class Secret:
    """One value the reader types: `NAME=value` in the kit's commands, and a QR code of the
    value alone when `qr`."""

    name: str
    value: str
    label: str
    qr: bool = False

    def __repr__(self) -> str:
        return f"Secret({self.name!r})"

    @property
    def line(self) -> str:
        return f"{self.name}={quote(self.value)}" if self.value else f"{self.name}="


@dataclass(frozen=True)
class Section:
    letter: str  # steps are numbered A1, A2, ... in it
    title: str
    words: str
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class Kit:
    title: str
    subtitle: str
    intro: str
    places: tuple[str, ...]
    keep_alive: str
    secrets_words: str
    secrets: tuple[Secret, ...]
    sections: tuple[Section, ...]
    fingerprint: str

    def __repr__(self) -> str:
        return f"Kit({self.title!r})"


@dataclass(frozen=True)
class _Server:
    root: DataRoot
    replica: ReplicaSettings
    web: str
    address: str


def _server(data_root: Path) -> _Server:
    root = DataRoot(data_root).require()
    cfg = settings.load(root.path)
    replica = from_config(cfg)  # UsageError when there is no [replica]
    web = http_base(
        cfg.get("server.public_url"), cfg.get("server.address"), cfg.get("server.http_port")
    )
    return _Server(root, replica, web, cfg.get("server.address"))


def _check_user(server: _Server, user: str) -> None:
    server.root.user_dir(user)  # an unknown user, named as every command names it


def _printed_key(replica: ReplicaSettings, *, admin: bool) -> tuple[str, str]:
    if replica.kit_access_key_id:
        return replica.kit_access_key_id, replica.kit_secret_access_key
    if admin:
        return replica.access_key_id, replica.secret_access_key
    return "", ""


def _fingerprint(replica: ReplicaSettings, secret: keys.CryptSecret, key: tuple[str, str]) -> str:
    printed = {
        "area": [secret.prefix, secret.password, secret.password2],
        "bucket": [replica.endpoint, replica.bucket, replica.region, replica.provider],
        "encrypt": replica.encrypt,
        "key": list(key),
    }
    digest = hashlib.sha256(b"bluegrass-kit 1\0" + json.dumps(printed, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def secrets_fingerprint(data_root: Path, user: str) -> str:
    """16 hex digits that change exactly when something printed on `user`'s kit that the
    reader needs changes: the area's secrets, the bucket's place, the printed S3 key. Makes
    the user's secrets if they do not exist yet, as a kit or `replicate` would."""
    server = _server(data_root)
    _check_user(server, user)
    secret = keys.user_secret(server.root.path, user)
    return _fingerprint(server.replica, secret, _printed_key(server.replica, admin=False))


def _today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


def _bucket_secrets(replica: ReplicaSettings, key: tuple[str, str]) -> list[Secret]:
    return [
        Secret("BUCKET", replica.bucket, "the bucket"),
        Secret("KEY_ID", key[0], "the key's id"),
        Secret("KEY_SECRET", key[1], "the key's secret", qr=bool(key[1])),
    ]


def _key_words(replica: ReplicaSettings, key: tuple[str, str], *, admin: bool) -> str:
    if replica.kit_access_key_id:
        return "KEY_ID and KEY_SECRET are a key that can read the bucket (not change it)."
    if admin:
        return (
            "KEY_ID and KEY_SECRET are the server's own key: it can add to the bucket too, "
            "and delete from it unless the bucket is locked (see the administrator's guide)."
        )
    return (
        "No key to read the bucket is printed here: after KEY_ID= and KEY_SECRET= type a key "
        "that can read the bucket, from the server's administrator or from the storage "
        "account's owner."
    )


def _places(server: _Server, user: str | None) -> list[str]:
    replica = server.replica
    where = f"{replica.endpoint} (provider {replica.provider}"
    where += f", region {replica.region})" if replica.region else ")"
    places = [
        f"The server: its web page is {server.web}; devices reach it at {server.address}.",
        f"The storage bucket '{replica.bucket}' at {where}: an "
        + ("encrypted " if replica.encrypt else "")
        + "copy of every day's version, uploaded after each daily snapshot.",
    ]
    with Accounts.open(server.root.path) as accounts:
        devices = [d for d in accounts.devices(user) if not d.revoked]
    if devices:
        more = len(devices) - MAX_DEVICES
        named = ", ".join(
            (f"{d.user}'s " if user is None else "") + f"'{d.name}' (added {d.created[:10]})"
            for d in devices[:MAX_DEVICES]
        )
        if more > 0:
            named += f" and {more} more"
        places.append(f"The computers and Pis that back up: {named}.")
    places.append(
        "A Bluegrass Pi, if there is one, keeps a full copy on its USB drive, labelled "
        f"{recoverysteps.DEFAULT_LABEL} unless it was set otherwise on the Pi (the server "
        "does not know the label). The drive's README says the same as part A below."
    )
    return places


HOW_TO_TYPE = (
    "In a terminal, type each line that starts with $ without the $ and press Enter; a line "
    "starting with > goes on from the one above it (type it too, without the >). Type these "
    "lines first, exactly as printed (or scan the codes: each holds the value after its =). "
)
MAX_DEVICES = 12  # more would push the commands onto a third page

KEEP_ALIVE = (
    "The storage account must stay paid: if the company holding the bucket closes it, that "
    "copy is gone. Keep the Pi's drive, unplugged and dry, and this page, somewhere safe (with "
    "a passport or a will): anyone holding it can read these files."
)


def _drive_section(user: str | None) -> Section:
    return Section(
        "A",
        "From the Pi's drive, with git alone",
        "",
        (recoverysteps.open_drive(), *recoverysteps.drive_steps(user)),
    )


def _then_as_from_the_drive(steps: tuple[Step, ...]) -> tuple[Step, ...]:
    """The bucket's steps end where the drive's begin: said in the last one's words (a step
    of its own would push the administrator's kit onto a third page)."""
    *first, last = steps
    words = (
        f"{last.words} Then, in this same folder, type the commands of A2, A3 and A4 (and A5 "
        f"for one file): your files arrive in {recoverysteps.RESTORED}, as described there."
    )
    return (*first, dataclasses.replace(last, words=words))


def user_kit(data_root: Path, user: str) -> Kit:
    """A user's kit. Raises UsageError for an unknown user or when no replica is set."""
    server = _server(data_root)
    _check_user(server, user)
    replica = server.replica
    secret = keys.user_secret(server.root.path, user)
    key = _printed_key(replica, admin=False)
    secrets = [
        Secret("WHO", user, "the account"),
        *_bucket_secrets(replica, key),
        Secret("AREA", secret.prefix, "your folder in the bucket"),
    ]
    if replica.encrypt:
        secrets += [
            Secret("PASSWORD", secret.password, "password", qr=True),
            Secret("PASSWORD2", secret.password2, "password2", qr=True),
        ]
    return Kit(
        title=f"Bluegrass recovery kit for {user}",
        subtitle=f"Made {_today()} for the account '{user}' on {server.web}.",
        intro=(
            f"Bluegrass backed up {user}'s folders, keeping every day's version. This page "
            "is how to get every file back, as it was on any day, if the server, the "
            "passwords or the person who set it up are gone: you need a computer with git "
            "(git-scm.com) and, for the bucket, rclone (rclone.org). It holds no web password."
        ),
        places=tuple(_places(server, user)),
        keep_alive=KEEP_ALIVE,
        secrets_words=(HOW_TO_TYPE + _key_words(replica, key, admin=False)),
        secrets=tuple(secrets),
        sections=(
            _drive_section(user),
            Section(
                "B",
                "From the storage bucket, with rclone and git",
                "",
                _then_as_from_the_drive(
                    (
                        replicasteps.connect(replica.provider, replica.region, replica.endpoint),
                        *replicasteps.user_area(replica.encrypt),
                    )
                ),
            ),
        ),
        fingerprint=_fingerprint(replica, secret, key),
    )


def server_kit(data_root: Path) -> Kit:
    """The administrator's kit: admin.json's secrets, which open every user's secrets."""
    server = _server(data_root)
    replica = server.replica
    admin, _made = keys.admin_secret(server.root.path)
    key = _printed_key(replica, admin=True)
    secrets = _bucket_secrets(replica, key)
    if replica.encrypt:
        secrets += [
            Secret("PASSWORD", admin.password, "administrator's password", qr=True),
            Secret("PASSWORD2", admin.password2, "administrator's password2", qr=True),
        ]
    digest = hashlib.sha256(
        json.dumps([admin.password, admin.password2, *key, replica.bucket]).encode()
    ).hexdigest()[:16]
    return Kit(
        title="Bluegrass recovery kit for the whole server",
        subtitle=f"Made {_today()} for the administrator of {server.web}.",
        intro=(
            "Bluegrass backed up the folders of every account on this server, keeping every "
            "day's version. This page is how to get every file of every account back, as it "
            "was on any day, if the server or its administrator is gone: you need a computer "
            "with git (git-scm.com) and rclone (rclone.org). It holds no web password."
        ),
        places=tuple(_places(server, None)),
        keep_alive=KEEP_ALIVE,
        secrets_words=(
            HOW_TO_TYPE
            + "They open the server's own area of the bucket, which holds every account's "
            "secrets. " + _key_words(replica, key, admin=True)
        ),
        secrets=tuple(secrets),
        sections=(
            _drive_section(None),
            Section(
                "B",
                "From the storage bucket, with rclone and git",
                "",
                _then_as_from_the_drive(
                    (
                        replicasteps.connect(replica.provider, replica.region, replica.endpoint),
                        *replicasteps.server_area(replica.encrypt),
                        *replicasteps.user_area(replica.encrypt),
                    )
                ),
            ),
        ),
        fingerprint=digest,
    )
