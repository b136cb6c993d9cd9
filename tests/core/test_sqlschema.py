"""The shared user_version migrations (bluegrass.core.sqlschema), on real SQLite files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from bluegrass.core import sqlschema
from bluegrass.core.errors import BluegrassError

MIGRATIONS = [
    ["CREATE TABLE a (x INTEGER)"],
    ["ALTER TABLE a RENAME COLUMN x TO y", "INSERT INTO a VALUES (7)"],
]


def _open(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def test_a_database_is_brought_up_step_by_step_and_only_once(tmp_path: Path) -> None:
    db = _open(tmp_path / "x.db")
    assert sqlschema.migrate(db, MIGRATIONS[:1], "x") == 1
    db.execute("INSERT INTO a VALUES (1)")
    assert sqlschema.migrate(db, MIGRATIONS, "x") == 2
    assert sqlschema.migrate(db, MIGRATIONS, "x") == 2  # nothing runs twice
    assert [r[0] for r in db.execute("SELECT y FROM a ORDER BY y")] == [1, 7]


def test_a_newer_database_is_refused_untouched(tmp_path: Path) -> None:
    db = _open(tmp_path / "x.db")
    db.execute("PRAGMA user_version = 5")
    with pytest.raises(BluegrassError, match=r"x\.db was written by a newer Bluegrass"):
        sqlschema.migrate(db, MIGRATIONS, str(tmp_path / "x.db"))
    assert sqlschema.version(db) == 5


def test_a_failing_migration_leaves_the_old_version(tmp_path: Path) -> None:
    db = _open(tmp_path / "x.db")
    with pytest.raises(sqlite3.OperationalError):
        sqlschema.migrate(db, [*MIGRATIONS, ["SELECT * FROM missing"]], "x")
    assert sqlschema.version(db) == 0
    assert db.execute("SELECT name FROM sqlite_master WHERE name = 'a'").fetchone() is None
