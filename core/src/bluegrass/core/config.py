"""Configuration files: TOML, checked against a schema when loaded.

Every role describes its file as a Schema of Fields; `load` refuses unknown keys, wrong types
and bad values with one line that names the file, the key and what was expected, so a typo
never silently falls back to a default.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bluegrass.core.errors import ConfigError

Value = Any


@dataclass(frozen=True)
class Field:
    """One key: its type, default, and what a valid value looks like (said in errors)."""

    type: type | tuple[type, ...]
    default: Value
    expected: str
    check: Callable[[Value], bool] | None = None
    doc: str = ""
    secret: bool = False  # its value may hold a password: never repeated in an error

    def validate(self, value: Value) -> bool:
        # bool is an int in Python; a config that says `share = true` is still wrong.
        if isinstance(value, bool) and self.type is not bool:
            return False
        if not isinstance(value, self.type):
            return False
        return self.check is None or self.check(value)


@dataclass(frozen=True)
class Table:
    fields: Mapping[str, Field | Table]
    doc: str = ""


@dataclass(frozen=True)
class TableMap:
    """A table of user-named sub-tables, e.g. [segments.<name>], each with the same fields."""

    item: Table
    key_pattern: str
    key_expected: str
    doc: str = ""


@dataclass(frozen=True)
class TableList:
    """An array of tables, e.g. [[notify.targets]], each with the same fields."""

    item: Table
    doc: str = ""


@dataclass
class Config:
    path: Path | None
    values: dict[str, Value] = field(default_factory=dict)

    def get(self, dotted: str) -> Value:
        node: Value = self.values
        for part in dotted.split("."):
            node = node[part]
        return node


def _where(path: Path | None) -> str:
    return str(path) if path else "<defaults>"


def _describe(value: Value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe_secret(value: Value) -> str:
    if isinstance(value, str):
        scheme = value.split("://", 1)[0] if "://" in value else ""
        shown = f"'{scheme}://…'" if scheme.isalnum() else "a value"
        return f"{shown} (the rest not shown: it may hold a password)"
    if isinstance(value, list):
        return f"a list of {len(value)} (not shown: it may hold passwords)"
    return _describe(value)


def _apply(schema: Table, data: Mapping[str, Value], path: Path | None, prefix: str) -> dict:
    result: dict[str, Value] = {}
    for key in data:
        if key not in schema.fields:
            known = ", ".join(sorted(schema.fields)) or "none"
            raise ConfigError(
                f"{_where(path)}: unknown key {prefix + key!r} (expected one of: {known})"
            )
    for key, spec in schema.fields.items():
        dotted = prefix + key
        if isinstance(spec, Field):
            if key not in data:
                result[key] = spec.default
            elif not spec.validate(data[key]):
                got = (_describe_secret if spec.secret else _describe)(data[key])
                raise ConfigError(f"{_where(path)}: {dotted}: expected {spec.expected}, got {got}")
            else:
                result[key] = data[key]
        elif isinstance(spec, Table):
            sub = data.get(key, {})
            if not isinstance(sub, dict):
                raise ConfigError(
                    f"{_where(path)}: {dotted}: expected a table, got {_describe(sub)}"
                )
            result[key] = _apply(spec, sub, path, dotted + ".")
        elif isinstance(spec, TableList):
            entries = data.get(key, [])
            if not isinstance(entries, list):
                raise ConfigError(
                    f"{_where(path)}: {dotted}: expected a list of tables ([[{dotted}]]), "
                    f"got {_describe(entries)}"
                )
            result[key] = []
            for index, body in enumerate(entries):
                if not isinstance(body, dict):
                    raise ConfigError(
                        f"{_where(path)}: {dotted}[{index}]: expected a table, "
                        f"got {_describe(body)}"
                    )
                result[key].append(_apply(spec.item, body, path, f"{dotted}[{index}]."))
        else:
            sub = data.get(key, {})
            if not isinstance(sub, dict):
                raise ConfigError(
                    f"{_where(path)}: {dotted}: expected a table, got {_describe(sub)}"
                )
            items = {}
            for name, body in sub.items():
                if not re.fullmatch(spec.key_pattern, name):
                    raise ConfigError(
                        f"{_where(path)}: {dotted}.{name}: expected {spec.key_expected}"
                    )
                if not isinstance(body, dict):
                    raise ConfigError(
                        f"{_where(path)}: {dotted}.{name}: expected a table, got {_describe(body)}"
                    )
                items[name] = _apply(spec.item, body, path, f"{dotted}.{name}.")
            result[key] = items
    return result


def defaults(schema: Table) -> Config:
    return Config(None, _apply(schema, {}, None, ""))


def load(path: Path, schema: Table, *, missing_ok: bool = True) -> Config:
    """Read and check `path`; a missing file gives the defaults when `missing_ok`."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if missing_ok:
            return Config(path, _apply(schema, {}, path, ""))
        raise ConfigError(f"{path}: no such configuration file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return Config(path, _apply(schema, data, path, ""))


def render_defaults(schema: Table, header: str) -> str:
    """A commented TOML file showing every key with its default, for `init` to write."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]

    def emit(table: Table, prefix: str) -> None:
        scalars = [(k, v) for k, v in table.fields.items() if isinstance(v, Field)]
        if prefix:
            lines.append("")
            if table.doc:
                lines.append(f"# {table.doc}")
            lines.append(f"[{prefix}]")
        for key, spec in scalars:
            if spec.doc:
                lines.append(f"# {spec.doc}")
            lines.append(f"# {key} = {_toml_value(spec.default)}")
        for key, spec in table.fields.items():
            dotted = f"{prefix}.{key}" if prefix else key
            if isinstance(spec, Table):
                emit(spec, dotted)
            elif isinstance(spec, TableMap):
                lines.append("")
                if spec.doc:
                    lines.append(f"# {spec.doc}")
                lines.append(f"# [{dotted}.NAME]")
            elif isinstance(spec, TableList):
                lines.append("")
                if spec.doc:
                    lines.append(f"# {spec.doc}")
                lines.append(f"# [[{dotted}]]")
                for name, item in spec.item.fields.items():
                    if isinstance(item, Field):
                        if item.doc:
                            lines.append(f"# {item.doc}")
                        lines.append(f"# {name} = {_toml_value(item.default)}")

    emit(schema, "")
    return "\n".join(lines) + "\n"


def _toml_value(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value)


# -- checks shared by the roles' schemas ------------------------------------------------------

_CLOCK = re.compile(r"([01]\d|2[0-3]):[0-5]\d")


def is_clock_time(value: str) -> bool:
    return _CLOCK.fullmatch(value) is not None


def is_share(value: float) -> bool:
    return 0 < value <= 1


# scheme, host (a name, an IPv4 address or a bracketed IPv6 one), an optional port; no path,
# query or credentials: a base the roles add their own paths to.
_HTTP_BASE = re.compile(r"https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?/?")


def is_http_base(value: str) -> bool:
    return _HTTP_BASE.fullmatch(value) is not None


def host_port(host: str, port: int) -> str:
    """The `host:port` a server is told to listen on; an IPv6 address goes in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
