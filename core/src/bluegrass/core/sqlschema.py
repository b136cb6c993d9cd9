"""Versioned SQLite schemas: SQLite's `user_version` and a list of migrations.

Each entry of a schema's migrations brings a database from version i to i + 1, so a new
version only appends one; all of them run inside one write transaction, so a database is
never left half-migrated. A database written by a newer Bluegrass (a higher version than the
list knows) is refused rather than guessed at. Used by the cloud's accounts database, the
appliance's state and the panel's reference backend.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from bluegrass.core.errors import BluegrassError

Migrations = Sequence[Sequence[str]]


def version(db: sqlite3.Connection) -> int:
    """Given an open connection, return its schema version (0 for a new database)."""
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(
    db: sqlite3.Connection,
    migrations: Migrations,
    what: str,
    error: type[BluegrassError] = BluegrassError,
) -> int:
    """Given a connection in autocommit mode (isolation_level=None), run the migrations it
    lacks, in one IMMEDIATE transaction, and return the schema version it is at now.

    Raise `error` ("WHAT was written by a newer Bluegrass …") when the database's version is
    above len(migrations); sqlite3.Error when a statement fails (nothing is changed then).
    """
    latest = len(migrations)
    if version(db) == latest:
        return latest
    db.execute("BEGIN IMMEDIATE")
    try:
        # Again inside the transaction: several processes (workers, daemons) start together.
        current = version(db)
        if current > latest:
            raise error(
                f"{what} was written by a newer Bluegrass (schema {current}, this one knows up "
                f"to {latest}); update Bluegrass"
            )
        for target in range(current, latest):
            for statement in migrations[target]:
                db.execute(statement)
        # PRAGMA takes no parameters; the value is our own integer.
        db.execute(f"PRAGMA user_version = {latest}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return latest
