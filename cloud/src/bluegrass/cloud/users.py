"""The people whose files this server keeps, and their devices: adding them.

Used by `user add`, `device add` and the web interface's administration alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bluegrass.cloud import hostkey, settings, tlskey
from bluegrass.cloud.accounts import Accounts
from bluegrass.cloud.credentials import NewDevice, check_device_name
from bluegrass.cloud.datadir import DataRoot
from bluegrass.core import names
from bluegrass.core.enrollment import Enrollment
from bluegrass.core.errors import UsageError


def enrollment_code(root: DataRoot, new: NewDevice) -> str:
    """Given a data root and a new device, return the device's enrollment code: the server's
    addresses from the settings, its pinned SSH host key and TLS key, the device's
    credentials."""
    cfg = settings.load(root.path)
    return Enrollment(
        server=cfg.get("server.address"),
        sftp_port=cfg.get("server.sftp_port"),
        http_port=cfg.get("server.http_port"),
        user=new.device.user,
        device=new.device.id,
        secret=new.secret,
        host_key=hostkey.public_line(root.path),
        url=cfg.get("server.public_url"),
        device_port=cfg.get("server.device_port"),
        tls_pin=tlskey.pin(root.path),
    ).encode()


@dataclass(frozen=True)
class AddedDevice:
    new: NewDevice
    code: str  # its enrollment code, shown once


def add_device(root: DataRoot, user: str, name: str | None) -> AddedDevice:
    """Given a data root, an existing user and a device name (None: "device N"), add a device
    and return it with its enrollment code (`device add`, the web interface). Raise UsageError
    for an unknown user or a bad name, BluegrassError for broken settings."""
    root.user_dir(user)
    if name is not None:
        check_device_name(name)
    settings.load(root.path)  # a broken config must stop us before anything is written
    hostkey.ensure(root.path)
    tlskey.ensure(root.path)
    with Accounts.open(root.path) as accounts:
        name = name or f"device {len(accounts.devices(user)) + 1}"
        with accounts.transaction():
            new = accounts.new_device(user, name)
            code = enrollment_code(root, new)
    return AddedDevice(new, code)


@dataclass(frozen=True)
class NewUser:
    name: str
    folder: Path
    device: NewDevice | None
    code: str | None  # the first device's enrollment code, shown once


def create_user(
    root: DataRoot,
    name: str,
    *,
    device_name: str | None,
    within: Callable[[Accounts], object] | None = None,
) -> NewUser:
    """Given a data root and a new user's name, add the user: DATA/files/NAME/ and their
    rows, and a first device unless `device_name` is None; return what was made. Raise
    UsageError for a bad or taken name.

    `within` runs inside the same transaction, first (the web interface sets the user's
    password there, and refuses a second first-run setup); if it raises, nothing is made.
    """
    name = names.check("user", name)
    if device_name is not None:
        check_device_name(device_name)
    folder = root.files / name
    if folder.exists() or folder.is_symlink():
        raise UsageError(f"user {name!r} already exists")
    settings.load(root.path)  # a broken config must stop us before anything is written
    hostkey.ensure(root.path)
    new: NewDevice | None = None
    code: str | None = None
    with Accounts.open(root.path) as accounts:
        if accounts.has_user(name):
            # Devices left from a user whose folder was deleted by hand must not open the
            # new user's files.
            raise UsageError(
                f"user {name!r} has no folder but still has devices; remove them first: "
                f"bluegrass-cloud user remove {name}"
            )
        # The folder and the rows appear together: the rows commit only if mkdir worked, and
        # the folder goes again if the commit fails.
        made = False
        try:
            with accounts.transaction():
                accounts.add_user(name)
                if within is not None:
                    within(accounts)
                if device_name is not None:
                    new = accounts.new_device(name, device_name)
                    code = enrollment_code(root, new)
                root.files.mkdir(exist_ok=True)
                folder.mkdir()
                made = True
        except BaseException:
            if made and not accounts.has_user(name):
                folder.rmdir()
            raise
    return NewUser(name, folder, new, code)
