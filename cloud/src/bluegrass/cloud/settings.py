"""The cloud's configuration file, DATA/bluegrass-cloud.toml, and its schema."""

from __future__ import annotations

from pathlib import Path

from bluegrass.core import config
from bluegrass.core.config import Field, Table, TableMap
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
# The same keys for one segment; unset (None) means "as in [snapshot]".
_SNAPSHOT_OVERRIDE = {"suspicious_share": Field((int, float), None, _SHARE, config.is_share)}

SCHEMA = Table(
    {
        "snapshot": Table(dict(_SNAPSHOT), doc="How snapshots are taken."),
        "schedule": Table(
            {
                "commit_at": Field(
                    str,
                    "03:00",
                    'a local time "HH:MM" (24-hour)',
                    config.is_clock_time,
                    doc="When the daily commit of every segment runs.",
                ),
            },
            doc="When jobs run.",
        ),
        "segments": TableMap(
            Table(dict(_SNAPSHOT_OVERRIDE)),
            key_pattern=rf"{NAME_PATTERN}/{NAME_PATTERN}",
            key_expected='a "user/segment" name, e.g. [segments."alice/photos"]',
            doc='Per-segment overrides of [snapshot], keyed "user/segment".',
        ),
    }
)

HEADER = """Bluegrass cloud configuration. Every key is optional; shown with its default.
Documented in docs/configuration.md."""


def load(data_root: Path) -> config.Config:
    return config.load(data_root / FILENAME, SCHEMA)


def suspicious_share(cfg: config.Config, user: str, segment: str) -> float:
    override = cfg.get("segments").get(f"{user}/{segment}", {})
    if override.get("suspicious_share") is not None:
        return override["suspicious_share"]
    return cfg.get("snapshot.suspicious_share")


def default_text() -> str:
    return config.render_defaults(SCHEMA, HEADER)
