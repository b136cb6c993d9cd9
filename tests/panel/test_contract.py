"""The Backend contract, once, against all three backends: the reference, the cloud's and the
Pi's, each on real SQLite over a fresh data root, set up through its own first-run setup."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from bluegrass.appliance import settings as pi_settings
from bluegrass.appliance.context import Appliance
from bluegrass.appliance.panelbackend import PiBackend
from bluegrass.cloud.datadir import DataRoot
from bluegrass.cloud.panelbackend import CloudBackend
from bluegrass.core import enrollment
from bluegrass.panel import PanelConfig, create_app
from bluegrass.panel.backend import Backend, BackendError, DeviceAdmin, Drive, NotFound
from bluegrass.panel.reference import ReferenceBackend

from tests.cloud.web import cli
from tests.panel.conftest import csrf_of, login

PASSWORD = "correct horse battery"


def _reference(tmp_path: Path) -> Backend:
    return ReferenceBackend(tmp_path / "ref")


def _cloud(tmp_path: Path) -> Backend:
    cli(tmp_path / "data")("init")
    return CloudBackend(DataRoot(tmp_path / "data"))


def _pi(tmp_path: Path) -> Backend:
    paths = pi_settings.Paths(tmp_path / "state")
    paths.ensure()
    (tmp_path / "drive").mkdir()
    return PiBackend(Appliance(paths, pi_settings.load(paths), str(tmp_path / "drive")))


MAKERS: dict[str, Callable[[Path], Backend]] = {
    "reference": _reference,
    "cloud": _cloud,
    "pi": _pi,
}


@pytest.fixture(params=sorted(MAKERS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Each backend, set up with the administrator alice (same name, same password)."""
    made = MAKERS[request.param](tmp_path)
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
