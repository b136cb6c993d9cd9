"""The replica's secrets: one pair per user, one for the administrator, made once, owner-only.

DATA/replica/keys/<user>.json  {"user", "prefix", "password", "password2"}: the user's crypt
                               remote is the bucket's <prefix>/ (a random name, so that the
                               bucket's listing does not show who the users are)
DATA/replica/admin.json        {"password", "password2"}: the crypt remote server/, which
                               holds the server's state and a copy of every user's secrets

rclone crypt derives its keys with scrypt from password and password2 (the salt); both are
random here (32 bytes each), so there is no weak passphrase to guess. One user's pair opens
that user's objects only; the administrator's opens the server's state, in which every user's
pair is kept, so `rebuild` needs nothing but the configuration and admin.json.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from bluegrass.core import names, secrets_file
from bluegrass.core.errors import BluegrassError

FOLDER = "replica"
ADMIN_FILE = "admin.json"
SERVER_PREFIX = "server"


class SecretsError(BluegrassError):
    """A secrets file that exists but cannot be used."""


@dataclass(frozen=True)
class CryptSecret:
    """A crypt remote's two secrets and where in the bucket it lives."""

    prefix: str
    password: str
    password2: str

    def __repr__(self) -> str:
        return f"CryptSecret(prefix={self.prefix!r})"


def folder(data_root: Path) -> Path:
    return data_root / FOLDER


def admin_path(data_root: Path) -> Path:
    return folder(data_root) / ADMIN_FILE


def user_path(data_root: Path, user: str) -> Path:
    names.check("user", user)
    return folder(data_root) / "keys" / f"{user}.json"


def _ensure_folder(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def _parse(path: Path, text: str, *, user: str | None) -> CryptSecret:
    try:
        data = json.loads(text)
        password, password2 = str(data["password"]), str(data["password2"])
        prefix = str(data["prefix"]) if user is not None else SERVER_PREFIX
    except (ValueError, KeyError, TypeError):
        raise SecretsError(f"{path}: not a replica secrets file (damaged?)") from None
    if len(password) < 32 or len(password2) < 32:
        raise SecretsError(f"{path}: the replica secrets are too short")
    if user is not None and data.get("user") != user:
        raise SecretsError(f"{path}: holds the secrets of {data.get('user')!r}, not of {user!r}")
    return CryptSecret(prefix, password, password2)


def _new(user: str | None) -> str:
    data: dict[str, str] = {}
    if user is not None:
        data["user"] = user
        # 16 random hex digits: no two users share a prefix, and the name says nothing.
        data["prefix"] = "u-" + secrets.token_hex(8)
    data["password"] = secrets.token_urlsafe(32)
    data["password2"] = secrets.token_urlsafe(32)
    return json.dumps(data, sort_keys=True)


def admin_secret(data_root: Path, *, create: bool = True) -> tuple[CryptSecret, bool]:
    """The administrator's secret and whether it was made just now. Raise BluegrassError when
    there is none and `create` is False (a rebuild cannot invent it)."""
    path = admin_path(data_root)
    made = False
    if not path.exists():
        if not create:
            raise BluegrassError(
                f"{path}: no administrator secret; copy the one kept from the old server there"
            )
        _ensure_folder(path.parent)
        made = True
    text = secrets_file.read_or_create(path, _new(None))
    return _parse(path, text, user=None), made


def user_secret(data_root: Path, user: str, *, create: bool = True) -> CryptSecret:
    """The user's secret, made on first use (0600, written whole; racing processes agree)."""
    path = user_path(data_root, user)
    if not path.exists() and not create:
        raise BluegrassError(f"{path}: no replica secrets for user {user!r}")
    _ensure_folder(path.parent)
    return _parse(path, secrets_file.read_or_create(path, _new(user)), user=user)


def known_users(data_root: Path) -> list[str]:
    found = folder(data_root) / "keys"
    if not found.is_dir():
        return []
    return sorted(p.stem for p in found.glob("*.json") if names.is_valid(p.stem))


def all_user_secrets(data_root: Path) -> dict[str, str]:
    """{user: the file's text}: what the server's state carries for a rebuild."""
    return {
        user: user_path(data_root, user).read_text(encoding="utf-8")
        for user in known_users(data_root)
    }


def install_user_secrets(data_root: Path, texts: dict[str, str]) -> None:
    """Write users' secrets files from the server's state (a rebuild), owner-only."""
    for user, text in texts.items():
        _parse(user_path(data_root, user), text, user=user)
        path = user_path(data_root, user)
        _ensure_folder(path.parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
