"""[replica] of bluegrass-cloud.toml as one object, with the S3 secret read from its file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bluegrass.cloud import settings as cloud_settings
from bluegrass.core.config import Config
from bluegrass.core.errors import ConfigError, UsageError


@dataclass(frozen=True)
class ReplicaSettings:
    endpoint: str
    bucket: str
    region: str
    provider: str
    access_key_id: str
    secret_access_key: str
    encrypt: bool
    full_every: int
    # The read-only key printed on recovery kits (bluegrass.cloud.kit); "" when not set.
    kit_access_key_id: str = ""
    kit_secret_access_key: str = ""

    def __repr__(self) -> str:  # never a secret in a log line or a traceback
        return f"ReplicaSettings(endpoint={self.endpoint!r}, bucket={self.bucket!r})"


def from_config(cfg: Config) -> ReplicaSettings:
    """Given the loaded (and so checked) configuration, return its [replica]. Raise UsageError
    when there is none and ConfigError when the secret's file cannot be read."""
    if not cloud_settings.replica_enabled(cfg):
        where = cfg.path or cloud_settings.FILENAME
        raise UsageError(
            f"no replica configured: set [replica] endpoint, bucket and keys in {where}"
        )
    values = cfg.get("replica")
    secret = _secret(cfg, values, "secret_access_key")
    kit_secret = _secret(cfg, values, "kit_secret_access_key")
    return ReplicaSettings(
        endpoint=values["endpoint"],
        bucket=values["bucket"],
        region=values["region"],
        provider=values["provider"],
        access_key_id=values["access_key_id"],
        secret_access_key=secret,
        encrypt=values["encrypt"],
        full_every=values["full_every"],
        kit_access_key_id=values["kit_access_key_id"],
        kit_secret_access_key=kit_secret,
    )


def _secret(cfg: Config, values: dict, key: str) -> str:
    """values[key], or the content of the file values[key + "_file"] names."""
    if not values[key + "_file"]:
        return str(values[key])
    path = Path(values[key + "_file"])
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise ConfigError(f"{cfg.path}: replica.{key}_file: cannot read {path}: {reason}") from None
    if not secret or any(ch.isspace() or not ch.isprintable() for ch in secret):
        raise ConfigError(
            f"{cfg.path}: replica.{key}_file: expected {path} to hold one "
            "secret access key (printable, no spaces)"
        )
    return secret
