"""bluegrass.cloud.emergency's rules on a real DATA/bluegrass.db, with the clock given
explicitly to `refresh` (the one place that decides "the wait has run out")."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from bluegrass.cloud.accounts import Accounts
from bluegrass.cloud.emergency import DAY, EmergencyStore
from bluegrass.core.errors import UsageError
from bluegrass.panel.accounts import hash_password


@pytest.fixture
def store(tmp_path: Path) -> EmergencyStore:
    with Accounts.open(tmp_path) as accounts, accounts.transaction():
        for name in ("alice", "bob", "carol", "eve"):
            accounts.add_user(name)
        digest = hash_password("a long enough password")
        for name in ("alice", "bob", "carol"):  # eve has no web login
            accounts.set_web_password(name, digest)
    return EmergencyStore.open(tmp_path)


def events(store: EmergencyStore) -> list[str]:
    """alice's log in the order written (the clock given to `refresh` is ahead of the real one
    the other steps use, so times would not order it)."""
    rows = store.db.execute("SELECT event FROM emergency_log WHERE owner = 'alice' ORDER BY id")
    return [row[0] for row in rows]


def test_the_wait_runs_out_by_the_clock_and_the_grant_is_dated_then(store: EmergencyStore) -> None:
    store.add_trusted("alice", "bob", 3)
    req = store.request("alice", "bob")
    store.refresh(req.requested + 3 * DAY - 1)
    assert store.granted_owners("bob") == []
    store.add_trusted("alice", "bob", 1)  # a shorter wait now does not shorten this request
    store.refresh(req.requested + 2 * DAY)
    assert store.granted_owners("bob") == []
    store.refresh(req.requested + 3 * DAY)
    assert store.granted_owners("bob") == ["alice"]
    granted = [e for e in store.events("alice") if e.event == "granted"]
    assert [e.at for e in granted] == [req.requested + 3 * DAY]
    assert store.granted_owners("carol") == []
    assert events(store) == ["added", "requested", "changed", "granted"]


def test_an_open_request_is_not_made_twice(store: EmergencyStore) -> None:
    store.add_trusted("alice", "bob", 7)
    first = store.request("alice", "bob")
    again = store.request("alice", "bob")
    assert again.id == first.id and events(store) == ["added", "requested"]


def test_access_is_logged_once_per_session_and_only_under_a_grant(store: EmergencyStore) -> None:
    store.add_trusted("alice", "bob", 1)
    req = store.request("alice", "bob")
    store.note_access("alice", "bob", "session-1")  # still waiting: nothing to log
    store.refresh(req.requested + DAY)
    for session in ("session-1", "session-1", "session-2", "session-1"):
        store.note_access("alice", "bob", session)
    store.note_access("alice", "carol", "session-3")  # carol has no grant
    assert events(store) == ["added", "requested", "granted", "accessed", "accessed"]


def test_removing_the_person_ends_the_grant(store: EmergencyStore) -> None:
    store.add_trusted("alice", "bob", 1)
    req = store.request("alice", "bob")
    store.refresh(req.requested + DAY)
    assert store.granted_owners("bob") == ["alice"]
    assert store.remove_trusted("alice", "bob")
    assert store.granted_owners("bob") == []
    assert store.latest("alice", "bob").state == "ended"  # type: ignore[union-attr]
    assert not store.remove_trusted("alice", "bob")
    # Named again later, the old grant does not come back: a new request, a new wait.
    store.add_trusted("alice", "bob", 1)
    assert store.granted_owners("bob") == []
    with pytest.raises(UsageError, match="No user 'carol' has named you"):
        store.request("carol", "bob")


@pytest.mark.parametrize(
    ("grantee", "days", "message"),
    [
        ("alice", 7, "cannot name yourself"),
        ("eve", 7, "no user 'eve' with a web login"),
        ("nobody", 7, "no user 'nobody' with a web login"),
        ("bob", 0, "from 1 to 90, not 0"),
        ("bob", 91, "from 1 to 90, not 91"),
    ],
)
def test_bad_names_and_waits_store_nothing(
    store: EmergencyStore, grantee: str, days: int, message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        store.add_trusted("alice", grantee, days)
    assert store.trusted("alice") == [] and store.events("alice") == []


def test_the_refresh_takes_no_write_lock_when_nothing_is_due(
    store: EmergencyStore, tmp_path: Path
) -> None:
    store.add_trusted("alice", "bob", 7)
    store.request("alice", "bob")
    with Accounts.open(tmp_path) as other, other.transaction():
        # Another writer holds the database: a refresh with nothing due still answers.
        store.db.execute("PRAGMA busy_timeout = 0")
        started = time.monotonic()
        store.refresh()
        assert time.monotonic() - started < 1
