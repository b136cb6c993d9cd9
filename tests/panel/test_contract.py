"""The Backend contract, once, against all three backends: the reference, the cloud's and the
Pi's, each on real SQLite over a fresh data root, set up through its own first-run setup."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from bluegrass.appliance import settings as pi_settings
from bluegrass.appliance.context import Appliance
from bluegrass.appliance.mirror import mirror_path
from bluegrass.appliance.panelbackend import PiBackend
from bluegrass.cloud.datadir import DataRoot
from bluegrass.cloud.panelbackend import CloudBackend
from bluegrass.core import enrollment
from bluegrass.core.store import Repository, browse, snapshot
from bluegrass.panel import PanelConfig, create_app
from bluegrass.panel.accounts import Account
from bluegrass.panel.backend import (
    Backend,
    BackendError,
    DeviceAdmin,
    Drive,
    Forbidden,
    NotFound,
    SegmentRef,
)
from bluegrass.panel.reference import ReferenceBackend

from tests.cloud.web import cli
from tests.panel.conftest import csrf_of, login

PASSWORD = "correct horse battery"


@dataclass
class Place:
    """Where a backend keeps alice's segment `docs`, and where its restores land."""

    repo: Path  # the history (the Pi: its mirror on the drive)
    live: Path  # the folder the snapshots are taken of (the cloud, the reference: the live tree)
    # Given the folder asked for, where a restore of the folder `letters` lands.
    restored: Callable[[str], Path]


def _reference(tmp_path: Path) -> tuple[Backend, Place]:
    root = tmp_path / "ref"
    made = ReferenceBackend(root)
    live = root / "files" / "alice" / "docs"
    return made, Place(root / "repos" / "alice" / "docs.git", live, lambda _: live / "letters")


def _cloud(tmp_path: Path) -> tuple[Backend, Place]:
    cli(tmp_path / "data")("init")
    data = DataRoot(tmp_path / "data")
    live = data.files / "alice" / "docs"
    return CloudBackend(data), Place(
        data.repo_path("alice", "docs"), live, lambda _: live / "letters"
    )


def _pi(tmp_path: Path) -> tuple[Backend, Place]:
    paths = pi_settings.Paths(tmp_path / "state")
    paths.ensure()
    drive = tmp_path / "drive"
    drive.mkdir()
    made = PiBackend(Appliance(paths, pi_settings.load(paths), str(drive)))
    # The daemon's published view, as a running daemon writes it: jobs are asked of it.
    made.state.put("daemon", {"state": "running", "pid": os.getpid()})
    place = Place(
        mirror_path(drive, "alice", "docs"),
        tmp_path / "cloud-live",
        lambda folder: drive / "restored" / folder,
    )
    return made, place


MAKERS: dict[str, Callable[[Path], tuple[Backend, Place]]] = {
    "reference": _reference,
    "cloud": _cloud,
    "pi": _pi,
}


@pytest.fixture(params=sorted(MAKERS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Each backend, set up with the administrator alice (same name, same password)."""
    made, _ = MAKERS[request.param](tmp_path)
    assert made.needs_setup()
    made.complete_setup("alice", PASSWORD, None)
    return made


def test_each_is_a_backend_and_setup_happens_once(backend: Backend) -> None:
    assert isinstance(backend, Backend)
    assert not backend.needs_setup()
    with pytest.raises(BackendError, match="already done"):
        backend.complete_setup("mallory", PASSWORD, None)
    assert backend.account("mallory") is None


def test_a_password_signs_in_and_a_change_ends_older_sessions(backend: Backend) -> None:
    alice = backend.check_password("alice", PASSWORD)
    assert alice is not None and alice.admin and alice == backend.account("alice")
    assert backend.check_password("alice", PASSWORD + "!") is None
    assert backend.check_password("nobody", PASSWORD) is None
    assert backend.check_password("Not A Name", PASSWORD) is None
    changed = backend.change_password(alice, "another long password")
    assert changed.session_epoch != alice.session_epoch
    assert backend.check_password("alice", PASSWORD) is None
    assert backend.check_password("alice", "another long password") == changed


def test_failed_sign_ins_are_counted_by_name_or_address_and_cleared(backend: Backend) -> None:
    since = datetime.now(UTC) - timedelta(minutes=1)
    backend.record_login_failure("alice", "10.0.0.1")
    backend.record_login_failure("bob", "10.0.0.2")
    found = backend.login_failures("alice", "10.0.0.2", since)
    assert sorted((f.name, f.ip) for f in found) == [("alice", "10.0.0.1"), ("bob", "10.0.0.2")]
    assert backend.login_failures("alice", "10.0.0.1", datetime.now(UTC) + timedelta(1)) == []
    backend.clear_login_failures("alice")
    assert [f.name for f in backend.login_failures("alice", "10.0.0.9", since)] == []


def test_an_unknown_segment_is_not_found_and_restores_nothing(backend: Backend) -> None:
    alice = backend.account("alice")
    assert alice is not None
    with pytest.raises(NotFound):
        backend.repository(alice, "alice", "nothing-here")
    with pytest.raises(NotFound):
        backend.restore(alice, "alice", "nothing-here", "HEAD", b".", "live", None)
    with pytest.raises(NotFound):
        backend.job(alice, "no-such-job")


def test_a_reference_database_from_before_versioning_keeps_its_accounts(tmp_path: Path) -> None:
    # Decision 82: the reference's tables were `accounts` and `login_failures`, unversioned.
    import sqlite3

    from bluegrass.panel.accounts import HASHER
    from bluegrass.panel.reference import MIGRATIONS

    root = tmp_path / "ref"
    root.mkdir()
    with sqlite3.connect(root / "panel.db") as db:
        for statement in MIGRATIONS[0]:
            db.execute(statement)
        db.execute(
            "INSERT INTO accounts VALUES ('alice', 1, ?, 'epoch-1', '2026-01-01')",
            (HASHER.hash(PASSWORD),),
        )
    backend = ReferenceBackend(root)
    assert not backend.needs_setup()
    found = backend.check_password("alice", PASSWORD)
    assert found is not None and found.admin and found.session_epoch == "epoch-1"


# -- what a backend has, the panel shows (decision 100) ----------------------------------------

HAS = {"reference": (True, False), "cloud": (True, False), "pi": (False, True)}


def test_each_has_only_the_parts_of_its_machine(
    backend: Backend, request: pytest.FixtureRequest
) -> None:
    devices, drive = HAS[request.node.callspec.params["backend"]]
    assert isinstance(backend, DeviceAdmin) is devices
    assert isinstance(backend, Drive) is drive
    assert hasattr(backend, "revoke_device") is devices
    assert hasattr(backend, "eject_drive") is drive


def test_the_panel_offers_only_what_the_backend_has(
    backend: Backend, request: pytest.FixtureRequest
) -> None:
    devices, drive = HAS[request.node.callspec.params["backend"]]
    app = create_app(PanelConfig(backend=backend, secret_key="contract-secret-key-0123456789"))
    with app.test_client() as client:
        login(client, "alice")
        token = csrf_of(client, "/admin/users")
        users = client.get("/admin/users").get_data(as_text=True)
        assert ("New device" in users) is devices
        enroll = client.post(
            "/admin/users/alice/enroll", data={"csrf_token": token, "device_name": "laptop"}
        )
        assert (enroll.status_code == 404) is not devices
        device = "d00000000"
        if devices:
            code = re.search(r'<textarea id="code"[^>]*>([^<]+)<', enroll.get_data(as_text=True))
            assert code is not None
            device = enrollment.decode(code.group(1).strip()).device
        revoke = client.post(
            f"/admin/users/alice/devices/{device}/revoke", data={"csrf_token": token}
        )
        assert revoke.status_code == (302 if devices else 404)
        eject = client.post("/drive/eject", data={"csrf_token": token})
        assert (eject.status_code == 404) is not drive


# -- the same history in each: alice/docs with two snapshots ---------------------------------


@dataclass
class Seeded:
    backend: Backend
    alice: Account
    place: Place
    first: str  # commit ids, oldest first
    second: str


@pytest.fixture(params=sorted(MAKERS))
def seeded(request: pytest.FixtureRequest, tmp_path: Path) -> Seeded:
    """Each backend with the administrator alice and her segment docs: two real snapshots."""
    made, place = MAKERS[request.param](tmp_path)
    alice = made.complete_setup("alice", PASSWORD, None)
    repo = Repository.init(place.repo)
    day = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    (place.live / "letters").mkdir(parents=True)
    (place.live / "notes.txt").write_text("first notes\n")
    (place.live / "letters" / "grandma.txt").write_text("Dear Grandma,\n")
    first = snapshot(repo, place.live, when=day).commit
    (place.live / "notes.txt").write_text("second notes\n")
    (place.live / "letters" / "new.txt").write_text("added later\n")
    second = snapshot(repo, place.live, when=day + timedelta(days=1)).commit
    assert first and second
    return Seeded(made, alice, place, first, second)


def test_each_lists_the_segment_and_its_snapshots(seeded: Seeded) -> None:
    backend, alice = seeded.backend, seeded.alice
    assert backend.segments(alice) == [SegmentRef("alice", "docs")]
    repo = backend.repository(alice, "alice", "docs")
    assert [s.commit for s in browse.recent(repo)] == [seeded.second, seeded.first]
    changed = browse.history(repo, b"notes.txt")
    assert [h.commit for h in changed] == [seeded.second, seeded.first]
    board = backend.dashboard(alice)
    assert [(s.user, s.segment) for s in board.segments] == [("alice", "docs")]
    assert board.segments[0].last_commit is not None


def test_each_starts_a_job_it_offers_and_reports_it(seeded: Seeded) -> None:
    backend, alice = seeded.backend, seeded.alice
    offered = backend.dashboard(alice).jobs
    assert offered
    kind = offered[0]
    started = backend.start_job(alice, kind.kind, "alice", "docs")
    status = backend.job(alice, started.id)
    assert (status.id, status.kind) == (started.id, kind.kind)
    assert status.state in ("queued", "running", "done", "failed")
    with pytest.raises(BackendError, match="Unknown job"):
        backend.start_job(alice, "no-such-kind", "alice", "docs")
    with pytest.raises(NotFound):
        backend.job(alice, "no-such-job")


def test_each_restores_an_older_version_where_it_restores_to(seeded: Seeded) -> None:
    backend, alice = seeded.backend, seeded.alice
    (target,) = backend.restore_targets(alice)
    message = backend.restore(
        alice, "alice", "docs", seeded.first, b"letters", target, "letters-then"
    )
    assert message.startswith("Restored letters")
    landed = seeded.place.restored("letters-then")
    assert sorted(p.name for p in (landed).iterdir()) == ["grandma.txt"]
    assert (landed / "grandma.txt").read_text() == "Dear Grandma,\n"
    # A path the snapshot does not have is refused, and changes nothing.
    with pytest.raises(BackendError):
        backend.restore(alice, "alice", "docs", seeded.first, b"letters/new.txt", target, "x")
    assert not (landed / "new.txt").exists()


def test_each_keeps_others_out_and_names_nothing_it_has_not(seeded: Seeded) -> None:
    backend, alice = seeded.backend, seeded.alice
    backend.add_user(alice, "bob", PASSWORD, admin=False)
    bob = backend.account("bob")
    assert bob is not None
    with pytest.raises(NotFound):
        backend.repository(alice, "alice", "no-such-segment")
    with pytest.raises(NotFound):
        backend.restore(alice, "alice", "no-such-segment", seeded.first, b".", "live", "x")
    with pytest.raises(BackendError):
        backend.restore(alice, "alice", "docs", seeded.first, b"../outside", "live", "x")
    if bob.admin:  # the Pi: every account administers the appliance and sees every segment
        assert backend.segments(bob) == [SegmentRef("alice", "docs")]
        return
    assert backend.segments(bob) == []
    with pytest.raises(NotFound):
        backend.repository(bob, "alice", "docs")
    (target,) = backend.restore_targets(alice)
    with pytest.raises(NotFound):
        backend.restore(bob, "alice", "docs", seeded.first, b"letters", target, "x")
    with pytest.raises(Forbidden):
        backend.users(bob)
    with pytest.raises(Forbidden):
        backend.add_user(bob, "carol", PASSWORD, admin=False)
