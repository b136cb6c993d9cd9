"""The cloud's panel backend on its own: accounts, the live restore's edge cases, the
dashboard's findings, jobs. Data roots are made with the real command line; the HTTP side is
in test_panel_cloud.py."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from bluegrass.cloud import authproxy, liverestore, panelbackend, webjobs
from bluegrass.cloud.accounts import Accounts
from bluegrass.cloud.database import MIGRATIONS
from bluegrass.cloud.datadir import DataRoot
from bluegrass.cloud.panelbackend import CloudBackend, secret_key
from bluegrass.cloud.webjobstore import WebJob
from bluegrass.core import syncmeta
from bluegrass.core.store import Repository
from bluegrass.core.store.manifest import ROOT
from bluegrass.panel.backend import Backend, BackendError, Forbidden, NotFound, Severity

from tests.cloud.server import wait_for
from tests.cloud.web import Run, cli, set_password

PASSWORD = "correct horse battery"


@pytest.fixture
def cloud(tmp_path: Path) -> Run:
    run = cli(tmp_path / "data")
    run("init")
    run("user", "add", "alice")
    run("user", "add", "bob")
    return run


@pytest.fixture
def root(tmp_path: Path, cloud: Run) -> DataRoot:
    return DataRoot(tmp_path / "data")


@pytest.fixture
def backend(root: DataRoot, cloud: Run) -> CloudBackend:
    set_password(cloud, "alice", PASSWORD, "--admin")
    set_password(cloud, "bob", PASSWORD)
    return CloudBackend(root)


def tree(folder: Path) -> dict[str, tuple[str, bytes]]:
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_symlink():
            out[rel] = ("l", os.readlink(path).encode())
        elif path.is_dir():
            out[rel] = ("d", b"")
        else:
            out[rel] = ("f", path.read_bytes())
    return out


def commit(cloud: Run, user: str = "alice", segment: str = "docs") -> str:
    out = json.loads(cloud("commit", "--user", user, "--segment", segment, "--json").stdout)
    return str(out["segments"][0]["commit"])


def test_it_is_a_panel_backend(backend: CloudBackend) -> None:
    assert isinstance(backend, Backend)
    assert backend.mode == "cloud" and backend.restore_targets(backend.account("bob")) == ["live"]


def test_schema_1_databases_are_migrated_and_keep_their_rows(tmp_path: Path) -> None:
    path = tmp_path / "bluegrass.db"
    with sqlite3.connect(path) as db:
        for statement in MIGRATIONS[0]:
            db.execute(statement)
        db.execute("INSERT INTO users VALUES ('alice', '2026-01-01T00:00:00+00:00')")
        db.execute(
            "INSERT INTO devices VALUES ('d12345678', 'alice', 'laptop', 'x', '2026-01-01', NULL)"
        )
        db.execute("PRAGMA user_version = 1")
    with Accounts(path) as accounts:
        assert accounts.users() == ["alice"]
        assert [d.id for d in accounts.devices("alice")] == ["d12345678"]
        assert not accounts.has_web_admin()
        version = accounts.db.execute("PRAGMA user_version").fetchone()[0]
    assert version == len(MIGRATIONS)


def test_schema_2_web_accounts_keep_signing_in_after_the_column_renames(tmp_path: Path) -> None:
    # Decision 82: migration 3 renames the web columns to the panel's store's names. A
    # password set before it must still sign in, with its epoch and its failures.
    path = tmp_path / "bluegrass.db"
    old_hash = PasswordHasher(time_cost=1, memory_cost=47104, parallelism=1).hash(PASSWORD)
    with sqlite3.connect(path) as db:
        for statement in MIGRATIONS[0] + MIGRATIONS[1]:
            db.execute(statement)
        db.execute("INSERT INTO users VALUES ('alice', '2026-01-01T00:00:00+00:00')")
        db.execute(
            "INSERT INTO web_accounts VALUES ('alice', ?, 1, 'epoch-1', '2026-01-01', '2026-01')",
            (old_hash,),
        )
        db.execute("INSERT INTO web_login_failures VALUES (?, 'alice', '10.0.0.9')", (time.time(),))
        db.execute("PRAGMA user_version = 2")
    with Accounts(path) as accounts:
        assert accounts.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        found = accounts.web().verify("alice", PASSWORD)
        assert found is not None and found.admin and found.session_epoch == "epoch-1"
        assert accounts.web().verify("alice", PASSWORD + "x") is None
        since = datetime.now() - timedelta(hours=1)
        assert [f.ip for f in accounts.web().failures("bob", "10.0.0.9", since)] == ["10.0.0.9"]
        accounts.remove_user("alice")  # the renamed column still cascades from users
        assert accounts.web_account("alice") is None


def test_user_password_from_the_command_line(cloud: Run, root: DataRoot) -> None:
    short = cloud("user", "password", "alice", "--password-stdin", check=False, input="short\n")
    assert short.returncode == 2 and "at least 10 characters" in short.stderr
    no_tty = cloud("user", "password", "alice", check=False, input="")
    assert no_tty.returncode == 2 and "--password-stdin" in no_tty.stderr
    unknown = cloud("user", "password", "zed", "--password-stdin", check=False, input=PASSWORD)
    assert unknown.returncode == 2 and "unknown user" in unknown.stderr
    backend = CloudBackend(root)
    assert backend.needs_setup()
    out = cloud("user", "password", "alice", "--password-stdin", "--json", input=PASSWORD + "\n")
    assert json.loads(out.stdout) == {"user": "alice", "admin": False, "created": True}
    assert backend.needs_setup()  # a web login, but no administrator yet
    first = backend.check_password("alice", PASSWORD)
    assert first is not None and not first.admin
    set_password(cloud, "alice", "another long password", "--admin")
    assert not backend.needs_setup()
    now = backend.account("alice")
    assert now is not None and now.admin and now.session_epoch != first.session_epoch
    assert backend.check_password("alice", PASSWORD) is None
    set_password(cloud, "alice", "another long password", "--no-admin")
    assert backend.needs_setup()
    # Web passwords are not device secrets and the other way round: separate tables.
    with Accounts.open(root.path) as accounts:
        hashes = {r[0] for r in accounts.db.execute("SELECT secret_hash FROM devices")}
        web = {r[0] for r in accounts.db.execute("SELECT hash FROM web_accounts")}
    assert hashes and web and not hashes & web and all("m=47104" in h for h in web)
    cloud("user", "remove", "alice")
    assert backend.account("alice") is None  # removing the user ends the web login too


def test_web_settings_are_checked_like_the_rest(cloud: Run, root: DataRoot) -> None:
    (root.path / "bluegrass-cloud.toml").write_text('[web]\nsecure_cookies = "yes"\n')
    proc = cloud("user", "add", "carol", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith("web.secure_cookies: expected true or false, got 'yes'"), (
        proc.stderr
    )
    (root.path / "bluegrass-cloud.toml").write_text("[web]\ntrust_proxy = true\nsecure = 1\n")
    assert "unknown key 'web.secure'" in cloud("user", "add", "carol", check=False).stderr


def test_only_one_first_run_setup_wins(root: DataRoot) -> None:
    backend = CloudBackend(root)
    results: list[str] = []

    def setup(name: str) -> None:
        try:
            backend.complete_setup(name, PASSWORD, None)
            results.append(name)
        except BackendError as exc:
            results.append(f"refused: {exc}")

    threads = [threading.Thread(target=setup, args=(n,)) for n in ("alice", "admin", "root")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if not r.startswith("refused")]
    assert len(winners) == 1, results
    assert not backend.needs_setup()
    account = backend.account(winners[0])
    assert account is not None and account.admin
    losers = {"alice", "admin", "root"} - set(winners)
    assert not any((root.files / n).exists() for n in losers - {"alice"})


def test_setup_takes_the_code_the_cli_prints_until_an_administrator_exists(
    root: DataRoot, cloud: Run
) -> None:
    backend = CloudBackend(root)
    assert backend.setup_code_required()
    assert not backend.check_setup_code("")  # none made yet: nothing matches
    code = json.loads(cloud("web", "setup-code", "--json").stdout)["setup_code"]
    assert json.loads(cloud("web", "setup-code", "--json").stdout)["setup_code"] == code
    assert backend.check_setup_code(code) and backend.check_setup_code(f" {code.lower()} ")
    assert not backend.check_setup_code(code[:-1]) and not backend.check_setup_code("é" * 23)
    set_password(cloud, "alice", PASSWORD, "--admin")
    assert not backend.check_setup_code(code)  # setup is over, whatever the file says


def test_the_session_key_is_made_once(tmp_path: Path) -> None:
    keys: list[str] = []
    threads = [threading.Thread(target=lambda: keys.append(secret_key(tmp_path))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(keys)) == 1 and len(keys[0]) >= 32
    assert (tmp_path / "web-session.key").stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["web-session.key"]


def test_admin_operations_are_for_admins(backend: CloudBackend, root: DataRoot) -> None:
    bob = backend.account("bob")
    alice = backend.account("alice")
    assert bob is not None and alice is not None
    for call in (
        lambda: backend.users(bob),
        lambda: backend.add_user(bob, "eve", PASSWORD, True),
        lambda: backend.reset_password(bob, "alice", PASSWORD),
        lambda: backend.new_enrollment_code(bob, "bob", "laptop"),
        lambda: backend.revoke_device(bob, "alice", "d00000000"),
    ):
        with pytest.raises(Forbidden):
            call()
    with pytest.raises(NotFound):
        backend.reset_password(alice, "nobody", PASSWORD)
    with pytest.raises(NotFound):
        backend.new_enrollment_code(alice, "nobody", "laptop")
    with pytest.raises(NotFound):
        backend.revoke_device(alice, "bob", "d00000000")
    listed = {u.name: u for u in backend.users(alice)}
    assert listed["alice"].admin and not listed["bob"].admin
    assert [d.name for d in listed["bob"].devices] == ["first device"]


# -- restoring into the live tree --------------------------------------------------------------


def live(root: DataRoot, user: str = "alice", segment: str = "docs") -> Path:
    return root.files / user / segment


def test_a_whole_segment_comes_back_but_sync_files_stay(
    backend: CloudBackend, root: DataRoot, cloud: Run
) -> None:
    docs = live(root)
    (docs / "sub").mkdir(parents=True)
    (docs / "sub" / "a.txt").write_text("a1\n")
    (docs / "b.txt").write_text("b1\n")
    (docs / "gone-later").mkdir()
    first = commit(cloud)
    expected = tree(docs)
    (docs / "sub" / "a.txt").write_text("a2\n")
    (docs / "new.txt").write_text("new\n")
    (docs / "b.txt").unlink()
    (docs / "b.txt").mkdir()  # a folder where a file was
    (docs / "b.txt" / "inner").write_text("inner\n")
    (docs / "gone-later").rmdir()
    (docs / "gone-later").write_text("a file where a folder was\n")
    (docs / ".bluegrass-check").write_text("check file, made by the first laptop sync\n")
    upload = docs / "sub" / "big.iso.0123abcd.bluegrass-part"
    upload.write_bytes(b"half an upload")
    alice = backend.account("alice")
    assert alice is not None
    message = backend.restore(alice, "alice", "docs", first, ROOT, "live")
    assert "the whole segment" in message and "kept in a new snapshot" in message
    now = tree(docs)
    assert now.pop(".bluegrass-check")[1].startswith(b"check file")
    assert now.pop("sub/big.iso.0123abcd.bluegrass-part") == ("f", b"half an upload")
    # What was put back is recorded for the devices, which get no bits or times over sftp.
    assert now.pop(".bluegrass-meta") == ("d", b"")
    recorded = syncmeta.parse(now.pop(".bluegrass-meta/cloud.meta")[1])
    assert set(recorded) == {b"sub", b"sub/a.txt", b"b.txt", b"gone-later"}
    a_txt = (docs / "sub" / "a.txt").stat()
    assert recorded[b"sub/a.txt"].mtime_ns == a_txt.st_mtime_ns
    assert recorded[b"sub/a.txt"].mode == stat.S_IMODE(a_txt.st_mode)
    assert now == expected
    assert not any((root.files / liverestore.STAGING).iterdir())


def test_a_symlink_comes_back_as_the_sync_endpoints_rclonelink(
    backend: CloudBackend, root: DataRoot, cloud: Run
) -> None:
    docs = live(root)
    docs.mkdir()
    (docs / "target.txt").write_text("t\n")
    (docs / "link").symlink_to("target.txt")
    first = commit(cloud)
    (docs / "link").unlink()
    alice = backend.account("alice")
    assert alice is not None
    backend.restore(alice, "alice", "docs", first, b"link", "live")
    assert not (docs / "link").is_symlink() and not (docs / "link").exists()
    assert (docs / "link.rclonelink").read_bytes() == b"target.txt"


def test_a_symlink_on_the_way_is_refused_and_nothing_outside_changes(
    backend: CloudBackend, root: DataRoot, cloud: Run, tmp_path: Path
) -> None:
    docs = live(root)
    (docs / "letters").mkdir(parents=True)
    (docs / "letters" / "x.txt").write_text("x\n")
    first = commit(cloud)
    outside = tmp_path / "outside"
    outside.mkdir()
    (docs / "letters" / "x.txt").unlink()
    (docs / "letters").rmdir()
    (docs / "letters").symlink_to(outside)
    alice = backend.account("alice")
    assert alice is not None
    with pytest.raises(BackendError, match="symbolic link"):
        backend.restore(alice, "alice", "docs", first, b"letters/x.txt", "live")
    assert list(outside.iterdir()) == []
    # The link itself, restored as a folder, is replaced, not followed.
    backend.restore(alice, "alice", "docs", first, b"letters", "live")
    assert (docs / "letters").is_dir() and not (docs / "letters").is_symlink()
    assert (docs / "letters" / "x.txt").read_text() == "x\n"
    assert list(outside.iterdir()) == []


def test_modes_times_and_missing_parents_come_back(
    backend: CloudBackend, root: DataRoot, cloud: Run
) -> None:
    docs = live(root)
    deep = docs / "a" / "b"
    deep.mkdir(parents=True)
    (deep / "run.sh").write_text("#!/bin/sh\n")
    (deep / "run.sh").chmod(0o750)
    os.utime(deep / "run.sh", ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    (docs / "a").chmod(0o711)
    first = commit(cloud)
    manifest = Repository.open(root.repo_path("alice", "docs")).manifest(first)
    (docs / "a").chmod(0o755)
    (deep / "run.sh").unlink()
    deep.rmdir()
    (docs / "a").rmdir()
    alice = backend.account("alice")
    assert alice is not None
    backend.restore(alice, "alice", "docs", first, b"a/b/run.sh", "live")
    st = (deep / "run.sh").stat()
    assert st.st_mode & 0o7777 == 0o750 and st.st_mtime_ns == 1_600_000_000_123_456_789
    assert (docs / "a").stat().st_mode & 0o777 == manifest[b"a"].mode == 0o711
    assert (docs / "a").stat().st_mtime_ns == manifest[b"a"].mtime_ns


def test_a_file_crosses_file_systems_through_a_temp_name(
    root: DataRoot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    staged = tmp_path / "staged"
    staged.write_bytes(b"restored bytes")
    os.utime(staged, ns=(1_500_000_000_000_000_000, 1_500_000_000_000_000_000))
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "f.txt").write_bytes(b"old")
    real_replace = os.replace
    calls: list[str] = []

    def replace(src: object, dst: object, **kwargs: object) -> None:
        calls.append(os.fsdecode(src))  # type: ignore[arg-type]
        if os.fsdecode(src) == str(staged):  # type: ignore[arg-type]
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_replace(src, dst, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(liverestore.os, "replace", replace)
    fd = os.open(dest, os.O_RDONLY | os.O_DIRECTORY)
    try:
        liverestore._Merge(liverestore.LiveRestoreResult()).place_file(staged, fd, "f.txt")
    finally:
        os.close(fd)
    assert (dest / "f.txt").read_bytes() == b"restored bytes"
    assert (dest / "f.txt").stat().st_mtime_ns == 1_500_000_000_000_000_000
    assert calls[1].startswith("f.txt.") and calls[1].endswith(".bluegrass-part")
    assert sorted(p.name for p in dest.iterdir()) == ["f.txt"]


def test_another_users_segment_cannot_be_restored_into(
    backend: CloudBackend, root: DataRoot, cloud: Run
) -> None:
    (live(root, "bob") / "x").mkdir(parents=True)
    bobs = commit(cloud, "bob")
    alice = backend.account("alice")
    assert alice is not None
    for user, segment in (("bob", "docs"), ("bob", "nothing"), ("alice", "docs")):
        with pytest.raises(NotFound):
            backend.restore(alice, user, segment, bobs, b"x", "live")


# -- the dashboard ----------------------------------------------------------------------------


def test_the_dashboard_reports_what_needs_attention(
    backend: CloudBackend, root: DataRoot, cloud: Run
) -> None:
    docs = live(root)
    docs.mkdir()
    for i in range(10):
        (docs / f"f{i}.txt").write_text(f"{i}\n")
    commit(cloud)
    for i in range(5):
        (docs / f"f{i}.txt").unlink()
    commit(cloud)  # half the files gone: suspicious
    stuck = docs / "big.iso.89abcdef.bluegrass-part"
    stuck.write_bytes(b"x")
    hour_ago = time.time() - 3600
    os.utime(stuck, (hour_ago, hour_ago))
    (docs / "fresh.bin.01234567.bluegrass-part").write_bytes(b"being written")
    (root.files / "alice" / "My Docs").mkdir()
    (live(root, "alice", "photos")).mkdir()  # no snapshot yet
    login = datetime.now().astimezone().replace(microsecond=0) - timedelta(minutes=7)
    log = root.path / authproxy.LOG
    log.parent.mkdir(exist_ok=True)
    log.write_text(
        f"{login.isoformat()} accepted user=alice client_ip=127.0.0.1 method=password device=d1\n"
        f"{(login + timedelta(minutes=1)).isoformat()} refused user=alice client_ip=x "
        'method=password reason="wrong secret"\n'
        f"{(login + timedelta(minutes=2)).isoformat()} accepted user=bob client_ip=x "
        "method=password device=d2\n"
    )
    with Accounts.open(root.path) as accounts:
        from bluegrass.cloud.jobhistory import Job

        accounts.record_job(
            Job("commit", "alice", "photos", "2026-01-01T03:00", "a", "b", "error", "disk full")
        )
    alice = backend.account("alice")
    assert alice is not None
    board = backend.dashboard(alice)
    by_name = {s.segment: s for s in board.segments}
    assert set(by_name) == {"docs", "photos"}  # alice's only
    docs_status = by_name["docs"]
    assert docs_status.last_sync == login
    assert docs_status.last_commit is not None
    texts = [(p.severity, p.text) for p in docs_status.problems]
    assert any(s == Severity.WARNING and "The latest snapshot" in t for s, t in texts), texts
    stuck_texts = [t for _, t in texts if "upload has stopped" in t]
    assert len(stuck_texts) == 1 and "big.iso.89abcdef.bluegrass-part" in stuck_texts[0]
    assert docs_status.next_job is not None and docs_status.next_job.startswith("commit, ")
    photos = by_name["photos"]
    assert photos.worst == Severity.ERROR and "disk full" in photos.problems[-1].text
    assert any("No snapshot yet" in p.text for p in photos.problems)
    assert any(p.severity == Severity.ERROR and "'My Docs'" in p.text for p in board.problems), (
        board.problems
    )
    assert [h.name for h in board.health] == ["Disk (data root)", "Sync endpoint"]  # admin
    assert [j.kind for j in board.jobs] == ["commit"]
    bob = backend.account("bob")
    assert bob is not None
    bobs = backend.dashboard(bob)
    assert bobs.health == [] and all(s.user == "bob" for s in bobs.segments)


def test_next_commit_follows_the_schedule(
    backend: CloudBackend, root: DataRoot, cloud: Run
) -> None:
    live(root).mkdir()
    commit(cloud)
    at = (datetime.now() + timedelta(hours=2)).replace(second=0, microsecond=0)
    (root.path / "bluegrass-cloud.toml").write_text(
        f'[segments."alice/docs"]\ncommit_at = "{at:%H:%M}"\n'
    )
    alice = backend.account("alice")
    assert alice is not None
    # The scheduler has never run here: the commit due at the last occurrence is pending.
    [status] = backend.dashboard(alice).segments
    assert status.next_job is not None and status.next_job.startswith("commit, now")
    due = at - timedelta(days=1)
    with Accounts.open(root.path) as accounts:
        from bluegrass.cloud.jobhistory import Job

        accounts.record_job(
            Job("commit", "alice", "docs", f"{due:%Y-%m-%dT%H:%M}", "a", "b", "ok", "no change")
        )
    [status] = backend.dashboard(alice).segments
    assert status.next_job == f"commit, {at:%Y-%m-%d %H:%M}"


# -- jobs ---------------------------------------------------------------------------------------


def test_snapshot_now_runs_in_its_own_process(
    backend: CloudBackend, root: DataRoot, cloud: Run
) -> None:
    live(root).mkdir()
    (live(root) / "a.txt").write_text("a\n")
    alice, bob = backend.account("alice"), backend.account("bob")
    assert alice is not None and bob is not None
    job = backend.start_job(alice, "commit", "alice", "docs")
    assert job.state in ("queued", "running") and job.id
    again = backend.start_job(alice, "commit", "alice", "docs")
    assert again.id == job.id or not backend.job(alice, job.id).active  # one at a time
    wait_for(lambda: not backend.job(alice, job.id).active, 30, "the job to end")
    done = backend.job(alice, job.id)
    assert done.state == "done" and done.progress == 1.0, done
    assert done.message.startswith("Committed "), done.message
    assert Repository.open(root.repo_path("alice", "docs")).head() is not None
    with pytest.raises(NotFound):
        backend.job(bob, job.id)
    with pytest.raises(NotFound):
        backend.start_job(alice, "commit", "bob", "docs")
    with pytest.raises(BackendError):
        backend.start_job(alice, "verify", "alice", "docs")
    assert not list((root.path / webjobs.LOCKS).iterdir())
    with Accounts.open(root.path) as accounts:
        last = accounts.last_job("commit", "alice", "docs")
    assert last is not None and last.outcome == "ok" and "web interface by alice" in last.detail


def test_a_job_whose_process_died_is_marked_failed(backend: CloudBackend, root: DataRoot) -> None:
    alice = backend.account("alice")
    assert alice is not None
    with Accounts.open(root.path) as accounts:
        accounts.add_web_job(
            WebJob(
                "feedc0de00000000",
                "alice",
                "commit",
                "x",
                "alice",
                "docs",
                "running",
                None,
                "",
                time.time(),
                None,
            )
        )
    found = backend.job(alice, "feedc0de00000000")
    assert found.state == "failed" and "stopped before it finished" in found.message


def test_panel_app_is_built_from_the_web_settings(root: DataRoot) -> None:
    (root.path / "bluegrass-cloud.toml").write_text(
        "[web]\nsecure_cookies = true\ntrust_proxy = true\n"
    )
    app = panelbackend.create_panel(root.path)
    assert app.config["SESSION_COOKIE_SECURE"] is True
    client = app.test_client()
    resp = client.get("/login", headers={"X-Forwarded-For": "192.0.2.7"})
    assert resp.status_code == 302  # no administrator yet: to /setup
    assert resp.headers["Strict-Transport-Security"].startswith("max-age=")


def _talk(argv: list[str], answers: list[tuple[bytes, bytes]]) -> tuple[int, bytes]:
    """Run `argv` on a new terminal of its own, answer each prompt; (exit code, all output)."""
    import pty
    import select

    pid, fd = pty.fork()
    if pid == 0:  # the child: its controlling terminal is the pty, as at a real prompt
        os.execv(argv[0], argv)
    seen = b""
    pending = list(answers)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
            if pending and seen.rstrip().endswith(pending[0][0]):
                os.write(fd, pending.pop(0)[1])
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), seen


def test_user_password_asks_twice_on_the_terminal(cloud: Run, root: DataRoot) -> None:
    from tests.conftest import VENV_BIN

    argv = [str(VENV_BIN / "bluegrass-cloud"), "--data", str(root.path), "user", "password"]
    code, out = _talk(
        [*argv, "bob"],
        [(b"Web password for bob:", b"first long password\n"), (b"again:", b"another one!!\n")],
    )
    assert code == 2 and b"not the same" in out, out
    assert b"first long password" not in out  # not echoed
    assert CloudBackend(root).account("bob") is None
    code, out = _talk(
        [*argv, "bob", "--admin"],
        [
            (b"Web password for bob:", b"first long password\n"),
            (b"again:", b"first long password\n"),
        ],
    )
    assert code == 0 and b"Web password of bob set (an administrator)" in out, out
    assert CloudBackend(root).check_password("bob", "first long password") is not None


def test_panel_backend_and_web_server_do_not_import_each_other() -> None:
    # Decision 80: run/status.json's name lives in datadir, so the panel's backend loads
    # without the web server's module (and the web server loads the panel only when built).
    code = (
        "import sys, bluegrass.cloud.panelbackend\n"
        "assert 'bluegrass.cloud.webapp' not in sys.modules, 'panelbackend imports webapp'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_each_part_of_the_database_opens_alone_on_the_same_rows(tmp_path: Path) -> None:
    # Decision 102: the parts of DATA/bluegrass.db are modules of their own; Accounts is all.
    from bluegrass.cloud.credentials import Credentials
    from bluegrass.cloud.database import SCHEMA_VERSION, now_text
    from bluegrass.cloud.jobhistory import Job, JobHistory
    from bluegrass.cloud.loginfailures import LoginFailures

    with JobHistory.open(tmp_path) as history:
        assert history.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        job = Job("commit", "alice", "docs", None, now_text(), now_text(), "ok", "")
        history.record_job(job)
    with Credentials.open(tmp_path) as credentials, credentials.transaction():
        credentials.add_user("alice")
    with LoginFailures.open(tmp_path) as failures:
        failures.record_failure("alice", "10.0.0.1", "wrong secret", 1000.0, 60.0)
    with Accounts.open(tmp_path) as accounts:
        assert accounts.users() == ["alice"]
        assert accounts.last_job("commit", "alice", "docs") == job
        assert accounts.recent_failures("alice", "10.0.0.2", 999.0) == (1, 0)
