"""The cloud's configuration file, DATA/bluegrass-cloud.toml, and its schema."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from bluegrass.core import config
from bluegrass.core.config import Field, Table, TableMap
from bluegrass.core.errors import ConfigError
from bluegrass.core.names import NAME_PATTERN

FILENAME = "bluegrass-cloud.toml"

_SHARE = "a number above 0 and at most 1 (a share of files, e.g. 0.3)"
_SNAPSHOT = {
    "suspicious_share": Field(
        (int, float),
        0.30,
        _SHARE,
        config.is_share,
        doc="A snapshot that deletes or changes more than this share of files is flagged.",
    ),
}
_CLOCK = 'a local time "HH:MM" (24-hour)'
# The same keys for one segment; unset (None) means "as in [snapshot]" / "as in [schedule]".
_SEGMENT_OVERRIDE = {
    "suspicious_share": Field((int, float), None, _SHARE, config.is_share),
    "commit_at": Field(str, None, _CLOCK, config.is_clock_time),
}

_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def is_host(value: str) -> bool:
    """An IP address or a DNS host name: what a client can connect to, or we can bind."""
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        pass
    name = value.removesuffix(".")
    return 0 < len(name) <= 253 and all(_LABEL.fullmatch(label) for label in name.split("."))


def is_port(value: int) -> bool:
    return 0 < value < 65536


_HOST = "a host name or an IP address (e.g. backup.example.org or 192.0.2.10)"
_PORT = "a TCP port number from 1 to 65535"
_SERVER = {
    "address": Field(
        str,
        "127.0.0.1",
        _HOST,
        is_host,
        doc="The host name or IP address devices connect to; it goes into enrollment codes.",
    ),
    "bind": Field(
        str,
        "127.0.0.1",
        _HOST.replace("e.g. backup.example.org or 192.0.2.10", "0.0.0.0 for every interface"),
        is_host,
        doc="The local address the sync endpoint and the web server listen on.",
    ),
    "sftp_port": Field(
        int, 2022, _PORT, is_port, doc="The sync endpoint's port (rclone serve sftp)."
    ),
    "http_port": Field(
        int, 8080, _PORT, is_port, doc="The web UI's port (plain http, or behind a TLS proxy)."
    ),
    "device_port": Field(
        int,
        8443,
        _PORT,
        is_port,
        doc="The devices' port: the HTTP side over TLS with this server's own key, which "
        "enrollment codes pin; devices send their passwords over HTTP only here.",
    ),
    "public_url": Field(
        str,
        "",
        'empty, or a base URL such as "https://backup.example.org" (no path)',
        lambda value: value == "" or config.is_http_base(value),
        doc="The web UI's address when a TLS proxy is in front of http_port; it goes into "
        "enrollment codes for people to find the site. Devices never send their passwords "
        "there (they use device_port). Empty: http://ADDRESS:HTTP_PORT.",
    ),
}

_BOOL = "true or false"
_WEB = {
    "secure_cookies": Field(
        bool,
        False,
        _BOOL,
        doc="Reached over HTTPS (e.g. through a TLS proxy): Secure cookies and HSTS.",
    ),
    "trust_proxy": Field(
        bool,
        False,
        _BOOL,
        doc="Trust one proxy's X-Forwarded-For/-Proto; only behind a proxy that sets them.",
    ),
}

# rclone 1.75's S3 providers (`rclone help backend s3`, option --s3-provider): the pinned
# rclone is the one that reads this value, so its list is the one a typo is checked against.
S3_PROVIDERS = (
    "AWS Alibaba ArvanCloud BizflyCloud Ceph ChinaMobile Cloudflare Cubbit DigitalOcean "
    "Dreamhost Exaba Fastly FileLu FlashBlade GCS HCP Hetzner HuaweiOBS IBMCOS IDrive "
    "ImpossibleCloud Intercolo IONOS Leviia Liara Linode LyveCloud Magalu Mega Minio Netease "
    "Outscale OVHcloud Petabox Qiniu Rabata RackCorp Rclone Scaleway Scality SeaweedFS Selectel "
    "Servercore SpectraLogic Storj Synology TencentCOS US3 Wasabi Zadara Zata ZeroServices Other"
).split()
# S3's bucket rule (3-63 letters, digits, dots, hyphens; letter or digit at both ends), with
# capitals allowed for the providers that keep old-style names.
_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{1,61}[A-Za-z0-9]")
# Keys and regions go into rclone's environment: printable, no white space, no control bytes.
_TOKEN = re.compile(r"[\x21-\x7e]{1,256}")
_REPLICA = {
    "endpoint": Field(
        str,
        "",
        'the S3 endpoint\'s base URL, e.g. "https://s3.eu-central-1.amazonaws.com" (no path)',
        lambda value: value == "" or config.is_http_base(value),
        doc="The S3 endpoint. Empty: no replica (the other keys are then ignored).",
    ),
    "bucket": Field(
        str,
        "",
        "an S3 bucket name (3-63 letters, digits, dots and hyphens)",
        lambda value: value == "" or _BUCKET.fullmatch(value) is not None,
        doc="The bucket; made beforehand (with Object Lock, docs/replica.md), never by Bluegrass.",
    ),
    "region": Field(
        str,
        "",
        "empty, or a region name without spaces (e.g. eu-central-1)",
        lambda value: value == "" or _TOKEN.fullmatch(value) is not None,
        doc="The bucket's region, if the provider needs one.",
    ),
    "provider": Field(
        str,
        "Other",
        "one of rclone's S3 providers (AWS, Ceph, Cloudflare, IDrive, Minio, Wasabi, ..., Other)",
        lambda value: value in S3_PROVIDERS,
        doc="rclone's S3 provider name.",
    ),
    "access_key_id": Field(
        str,
        "",
        "an access key id without spaces",
        lambda value: value == "" or _TOKEN.fullmatch(value) is not None,
        doc="The server's access key: put, get and list are enough (no delete).",
    ),
    "secret_access_key": Field(
        str,
        "",
        "a secret access key without spaces",
        lambda value: value == "" or _TOKEN.fullmatch(value) is not None,
        doc="Its secret (or secret_access_key_file).",
    ),
    "secret_access_key_file": Field(
        str,
        "",
        "an absolute path to a file holding the secret access key",
        lambda value: value == "" or Path(value).is_absolute(),
        doc="A file holding the secret, instead of secret_access_key.",
    ),
    "kit_access_key_id": Field(
        str,
        "",
        "an access key id without spaces",
        lambda value: value == "" or _TOKEN.fullmatch(value) is not None,
        doc="A read-only key printed on recovery kits (`kit`); empty: users' kits print no "
        "key, the administrator's prints the server's own.",
    ),
    "kit_secret_access_key": Field(
        str,
        "",
        "a secret access key without spaces",
        lambda value: value == "" or _TOKEN.fullmatch(value) is not None,
        doc="Its secret (or kit_secret_access_key_file).",
    ),
    "kit_secret_access_key_file": Field(
        str,
        "",
        "an absolute path to a file holding the secret access key",
        lambda value: value == "" or Path(value).is_absolute(),
        doc="A file holding the kit key's secret, instead of kit_secret_access_key.",
    ),
    "encrypt": Field(
        bool,
        True,
        _BOOL,
        doc="Encrypt names and contents with rclone crypt, per user (docs/replica.md).",
    ),
    "full_every": Field(
        int,
        30,
        "a whole number from 1 to 1000",
        lambda value: 1 <= value <= 1000,
        doc="After this many incremental bundles of a segment, the next one is full again.",
    ),
}

SCHEMA = Table(
    {
        "snapshot": Table(dict(_SNAPSHOT), doc="How snapshots are taken."),
        "schedule": Table(
            {
                "commit_at": Field(
                    str,
                    "03:00",
                    _CLOCK,
                    config.is_clock_time,
                    doc="When the daily commit of every segment runs.",
                ),
                "upload_wait_minutes": Field(
                    int,
                    120,
                    "a whole number of minutes from 0 to 1440",
                    lambda v: 0 <= v <= 1440,
                    doc="How long a daily commit waits for uploads into the segment to end (a "
                    "partial upload in it; ended once none was seen for a minute); then it "
                    "commits without the files in flight (0: never waits).",
                ),
            },
            doc="When jobs run.",
        ),
        "server": Table(dict(_SERVER), doc="Where devices reach this server."),
        "web": Table(dict(_WEB), doc="The web interface (served on [server] http_port)."),
        "replica": Table(
            dict(_REPLICA),
            doc="An encrypted copy of every history on S3 (docs/replica.md).",
        ),
        "segments": TableMap(
            Table(dict(_SEGMENT_OVERRIDE)),
            key_pattern=rf"{NAME_PATTERN}/{NAME_PATTERN}",
            key_expected='a "user/segment" name, e.g. [segments."alice/photos"]',
            doc='Per-segment overrides of [snapshot] and [schedule], keyed "user/segment".',
        ),
    }
)

HEADER = """Bluegrass cloud configuration. Every key is optional; shown with its default.
Documented in docs/configuration.md."""


def load(data_root: Path) -> config.Config:
    cfg = config.load(data_root / FILENAME, SCHEMA)
    _check_replica(cfg)
    return cfg


def _check_replica(cfg: config.Config) -> None:
    """The keys of [replica] that only make sense together: a half-set table is refused when
    the file is loaded, not at 03:00 when the first upload fails."""
    where = str(cfg.path) if cfg.path else "<defaults>"
    values = cfg.get("replica")
    if not values["endpoint"]:
        if values["bucket"] or values["access_key_id"]:
            raise ConfigError(
                f"{where}: replica.endpoint: expected the S3 endpoint's base URL, "
                "since [replica] sets a bucket or a key (or remove the [replica] table)"
            )
        return
    needed = {
        "bucket": "an S3 bucket name",
        "access_key_id": "the access key id the server uploads with",
    }
    for key, expected in needed.items():
        if not values[key]:
            raise ConfigError(f"{where}: replica.{key}: expected {expected}, got nothing")
    given = [k for k in ("secret_access_key", "secret_access_key_file") if values[k]]
    if len(given) != 1:
        got = "both" if given else "neither"
        raise ConfigError(
            f"{where}: replica.secret_access_key: expected exactly one of secret_access_key "
            f"and secret_access_key_file, got {got}"
        )

    kit_given = [k for k in ("kit_secret_access_key", "kit_secret_access_key_file") if values[k]]
    if values["kit_access_key_id"] and len(kit_given) != 1:
        got = "both" if kit_given else "neither"
        raise ConfigError(
            f"{where}: replica.kit_secret_access_key: expected exactly one of "
            f"kit_secret_access_key and kit_secret_access_key_file, got {got}"
        )
    if kit_given and not values["kit_access_key_id"]:
        raise ConfigError(
            f"{where}: replica.kit_access_key_id: expected the read-only key's id, since "
            f"[replica] sets {kit_given[0]}"
        )


def replica_enabled(cfg: config.Config) -> bool:
    return bool(cfg.get("replica.endpoint"))


def suspicious_share(cfg: config.Config, user: str, segment: str) -> float:
    override = cfg.get("segments").get(f"{user}/{segment}", {})
    if override.get("suspicious_share") is not None:
        return override["suspicious_share"]
    return cfg.get("snapshot.suspicious_share")


def commit_at(cfg: config.Config, user: str, segment: str) -> str:
    override = cfg.get("segments").get(f"{user}/{segment}", {})
    if override.get("commit_at") is not None:
        return override["commit_at"]
    return cfg.get("schedule.commit_at")


def default_text() -> str:
    return config.render_defaults(SCHEMA, HEADER)
