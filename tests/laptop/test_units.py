"""In-process checks of the pieces: platform folders, filter globs, TOML writing, outcome
classification, the pre-scan's unreadable case, progress lines."""

from __future__ import annotations

import io
import os
import tomllib
from pathlib import Path

import pytest
from bluegrass.core.errors import BluegrassError, ConfigError
from bluegrass.laptop import filters, paths, progress, scan, settings
from bluegrass.laptop.bisync import LOCKED_OUT, NEEDS_USER, OK, RETRY, SegmentSync
from bluegrass.laptop.runner import LogRecord, RunResult, parse_line

PIN = "sha256//" + "q" * 43 + "="


def test_platform_folders(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    linux = paths.places("linux")
    assert linux.config_dir == tmp_path / ".config" / "bluegrass"
    assert linux.state_dir == tmp_path / ".local" / "state" / "bluegrass"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("XDG_STATE_HOME", "relative/is/ignored")
    linux = paths.places("linux")
    assert linux.config_dir == tmp_path / "cfg" / "bluegrass"
    assert linux.state_dir == tmp_path / ".local" / "state" / "bluegrass"

    mac = paths.places("darwin")
    assert mac.config_dir == tmp_path / "Library" / "Application Support" / "Bluegrass"
    assert mac.state_dir == mac.config_dir

    monkeypatch.setenv("APPDATA", str(tmp_path / "Roaming"))
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "Local"))
    win = paths.places("win32")
    assert win.config_dir == tmp_path / "Roaming" / "Bluegrass"
    assert win.state_dir == tmp_path / "Local" / "Bluegrass"
    monkeypatch.delenv("APPDATA")
    with pytest.raises(BluegrassError, match="APPDATA"):
        paths.places("win32")


@pytest.mark.parametrize(
    ("glob", "path", "is_dir", "hit"),
    [
        ("*.tmp", "a.tmp", False, True),
        ("*.tmp", "deep/er/a.tmp", False, True),
        ("*.tmp", "a.tmpx", False, False),
        ("/*.tmp", "deep/a.tmp", False, False),
        ("/*.tmp", "a.tmp", False, True),
        ("cache/", "cache", True, True),
        ("cache/", "x/cache", True, True),
        ("cache/", "cache", False, False),
        ("/build/**", "build/a/b.o", False, True),
        ("*.{jpg,png}", "p/a.png", False, True),
        ("file?.txt", "file1.txt", False, True),
        ("file?.txt", "file/.txt", False, False),
        ("[!a]*.txt", "b.txt", False, True),
        ("[!a]*.txt", "a.txt", False, False),
        ("\\*star", "*star", False, True),
        ("\\*star", "xstar", False, False),
        ("{{.*\\.bak}}", "x/y.bak", False, True),
        ("name.txt", "other-name.txt", False, False),  # whole path elements only
    ],
)
def test_filter_globs_follow_rclone(glob, path, is_dir, hit):
    assert filters.Pattern(glob).matches(path, is_dir=is_dir) is hit


def test_partial_pattern_and_filters_file():
    name = "big.bin.6d231a42" + filters.PARTIAL_SUFFIX
    assert filters.is_partial_name(name)
    assert not filters.is_partial_name("big.bin.6d231a4" + filters.PARTIAL_SUFFIX)
    assert not filters.is_partial_name("notes.partial")  # a user's own .partial syncs
    assert len(filters.PARTIAL_SUFFIX) <= filters.RCLONE_MAX_PARTIAL_SUFFIX
    text = filters.filters_text("docs", ["*.tmp"])
    assert f"+ /{filters.CHECK_FILENAME}\n" in text
    assert f"- {filters.PARTIAL_GLOB}\n" in text
    assert filters.Pattern(filters.PARTIAL_GLOB).matches(name, is_dir=False)
    assert text.endswith("- *.tmp\n")
    assert filters.exact_rule("a[1]/b*.rclonelink") == "/a\\[1\\]/b\\*.rclonelink"


def test_core_partial_suffix_is_usable_by_rclone():
    from bluegrass.core import syncspec

    assert len(syncspec.PARTIAL_SUFFIX) <= filters.RCLONE_MAX_PARTIAL_SUFFIX
    assert syncspec.is_partial_upload(("x.0123abcd" + filters.PARTIAL_SUFFIX).encode())


def test_settings_render_round_trips(tmp_path):
    places = paths.Places(tmp_path, tmp_path)
    values = settings.load(places).values
    values["server"] = {
        "host": "h.example",
        "sftp_port": 2022,
        "http_port": 8080,
        "user": "ann",
        "device": "d00000001",
        "host_key": "ssh-ed25519 AAAA",
        "url": "https://backup.example/",
        "device_port": 8443,
        "tls_pin": PIN,
    }
    values["segments"]["docs"] = {
        "path": '/home/Ann "A"/back\\slash\ttab',
        "exclude": ["*.tmp", 'quote"d'],
        "interval_minutes": None,
        "max_delete_percent": 20,
        "max_change_percent": 30,
    }
    text = settings.render(values)
    assert tomllib.loads(text)["segments"]["docs"]["path"] == '/home/Ann "A"/back\\slash\ttab'
    settings.write_atomic(places.config_file, text, private=False)
    again = settings.load(places)
    assert again.values == values
    seg = again.segments()["docs"]
    assert (seg.interval_minutes, seg.max_delete_percent, seg.max_change_percent) == (15, 20, 30)
    assert again.http_base == "https://backup.example"
    assert again.device_side is not None
    assert (again.device_side.base, again.device_side.pin) == ("https://h.example:8443", PIN)


def test_settings_from_before_server_url_still_load(tmp_path):
    """Files written before [server] url existed load; the HTTP side is then host:http_port."""
    places = paths.Places(tmp_path, tmp_path)
    places.config_file.write_text(
        '[server]\nhost = "h.example"\nsftp_port = 2022\nhttp_port = 8080\nuser = "ann"\n'
        'device = "d00000001"\nhost_key = "ssh-ed25519 AAAA"\n'
    )
    loaded = settings.load(places)
    assert loaded.server["url"] == ""
    assert loaded.http_base == "http://h.example:8080"


@pytest.mark.parametrize(
    ("half", "named"),
    [("device_port = 8443\n", "tls_pin"), (f'tls_pin = "{PIN}"\n', "device_port")],
)
def test_settings_refuse_half_a_device_side(tmp_path, half, named):
    places = paths.Places(tmp_path, tmp_path)
    places.config_file.write_text(
        '[server]\nhost = "h.example"\nsftp_port = 2022\nhttp_port = 8080\nuser = "ann"\n'
        f'device = "d00000001"\nhost_key = "ssh-ed25519 AAAA"\n{half}'
    )
    with pytest.raises(ConfigError) as caught:
        settings.load(places)
    assert f"server.{named}: expected a value" in str(caught.value)


def test_settings_refuse_a_server_url_that_is_not_http(tmp_path):
    places = paths.Places(tmp_path, tmp_path)
    places.config_file.write_text('[server]\nurl = "file:///etc/passwd"\n')
    with pytest.raises(ConfigError) as caught:
        settings.load(places)
    message = str(caught.value)
    assert str(places.config_file) in message and "server.url" in message


def _result(code: int, *messages: tuple[str, str]) -> RunResult:
    return RunResult(code=code, records=[LogRecord(level, msg) for level, msg in messages])


@pytest.fixture
def engine(tmp_path) -> SegmentSync:
    places = paths.Places(tmp_path / "cfg", tmp_path / "state")
    current = settings.load(places)
    current.values["server"].update(host="h", sftp_port=2022, user="ann")
    current.values["segments"]["docs"] = {
        "path": str(tmp_path / "docs"),
        "exclude": [],
        "interval_minutes": None,
        "max_delete_percent": None,
        "max_change_percent": None,
    }
    return SegmentSync(current, current.segments()["docs"])


def test_exit_7_is_a_lockout_only_without_listings(engine: SegmentSync):
    critical = _result(
        7,
        ("error", "Bisync critical error: something"),
        ("error", "Bisync aborted. Error is retryable without --resync due to --resilient mode."),
    )
    assert engine.classify(critical).kind == LOCKED_OUT  # no listings in the workdir
    work = engine.files.workdir
    work.mkdir(parents=True)
    for side in ("path1", "path2"):
        (work / f"x..y.{side}.lst").write_text("# bisync listing v1\n")
        (work / f"x..y.{side}.lst-err").write_text("# older failure, since recovered\n")
    assert engine.classify(critical).kind == RETRY  # listings kept: retryable
    must = _result(7, ("error", "Must run --resync to recover."))
    assert engine.classify(must).kind == LOCKED_OUT


@pytest.mark.parametrize(
    ("result", "kind", "needle"),
    [
        (_result(0), OK, "in sync"),
        (
            _result(
                1,
                ("error", 'too many deletes (>50%, 8 of 14) on Path2 "bluegrass:docs/". Run'),
            ),
            NEEDS_USER,
            # rclone's "8 of 14" counts folders too; without a listing to count files in,
            # no number is given (tests/laptop/test_guards.py counts them through the endpoint)
            "stopped before deleting many files on the cloud",
        ),
        (
            _result(
                1,
                (
                    "critical",
                    "NewFs: couldn't connect SSH: ssh: handshake failed: knownhosts: key mismatch",
                ),
            ),
            NEEDS_USER,
            "host key does not match",
        ),
        (
            # Enrolled without a pinned HTTPS side: whether the password is wrong cannot be
            # told (tests/security/test_device_https.py covers the pinned verdicts).
            _result(1, ("critical", "NewFs: couldn't connect SSH: ssh: unable to authenticate")),
            RETRY,
            "cannot be told whether the password is wrong",
        ),
        (
            _result(
                1,
                (
                    "critical",
                    "NewFs: couldn't connect SSH: dial tcp 10.0.0.1:2022: "
                    "connect: no route to host",
                ),
            ),
            RETRY,
            "no route to host",
        ),
        (_result(2, ("raw", "Error: unknown flag: --bogus")), NEEDS_USER, "refused the sync"),
        (_result(1, ("error", "Failed to copy: disk full")), RETRY, "disk full"),
    ],
)
def test_outcomes(engine: SegmentSync, result, kind, needle):
    outcome = engine.classify(result)
    assert outcome.kind == kind
    assert needle in outcome.message


def test_parse_line():
    rec = parse_line('{"level":"notice","msg":"hi","object":"a.txt","stats":{"bytes":3}}\n')
    assert (rec.level, rec.msg, rec.object, rec.stats) == ("notice", "hi", "a.txt", {"bytes": 3})
    assert parse_line("panic: oops\n") == LogRecord("raw", "panic: oops")


@pytest.mark.skipif(os.name != "posix", reason="permission bits")
def test_scan_reports_unreadable_files(tmp_path, monkeypatch):
    (tmp_path / "ok.txt").write_text("x")
    (tmp_path / "locked.txt").write_text("x")
    real_access = os.access

    def access(path, mode):  # as if locked.txt were another user's mode-600 file
        return not os.fsdecode(path).endswith("locked.txt") and real_access(path, mode)

    monkeypatch.setattr(os, "access", access)
    found = scan.scan(Path(tmp_path), filters.Excludes([]))
    assert [(f.path, f.kind) for f in found.unsyncable] == [("locked.txt", "unreadable")]
    assert found.excludes == ["/locked.txt"]


def test_progress_bar_and_plain_lines(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stats = {
        "bytes": 5_000_000,
        "totalBytes": 10_000_000,
        "transfers": 1,
        "totalTransfers": 2,
        "speed": 1_000_000,
        "eta": 5,
    }
    tty = Tty()
    bar = progress.Progress("docs", tty)
    bar(LogRecord("notice", "", stats=stats))
    bar.finish()
    drawn = tty.getvalue()
    assert drawn.startswith("\rdocs [##########..........]  50% 5.0 MB/10.0 MB 1/2 files, ")
    assert "1.0 MB/s ETA 5s" in drawn
    assert drawn.endswith("\r" + " " * 99 + "\r")  # the bar is wiped at the end

    plain = io.StringIO()
    lines = progress.Progress("docs", plain, plain_every=0)
    lines(LogRecord("notice", "", stats=stats))
    lines(LogRecord("notice", "", stats={**stats, "bytes": 10_000_000, "transfers": 2}))
    lines(LogRecord("info", "not stats"))
    assert plain.getvalue().splitlines() == [
        "docs: 5.0 MB of 10.0 MB, 1 of 2 files, 1.0 MB/s ETA 5s",
        "docs: 10.0 MB of 10.0 MB, 2 of 2 files, 1.0 MB/s ETA 5s",
    ]
    assert "\r" not in plain.getvalue()


def test_scan_without_links_reports_symlinks_and_keeps_rclonelink_files(tmp_path):
    """What a Windows laptop does (bisync runs without --links there)."""
    (tmp_path / "target.txt").write_text("x")
    (tmp_path / "link").symlink_to("target.txt")
    (tmp_path / "from-cloud.rclonelink").write_text("target.txt")
    without = scan.scan(Path(tmp_path), filters.Excludes([]), links=False)
    assert [(f.path, f.kind) for f in without.unsyncable] == [("link", "symlink")]
    with_links = scan.scan(Path(tmp_path), filters.Excludes([]), links=True)
    assert [(f.path, f.kind) for f in with_links.unsyncable] == [
        ("from-cloud.rclonelink", "rclonelink-name")
    ]


def test_scan_reports_a_folder_of_the_name_the_sidecars_use(tmp_path):
    """Every sync leaves the segment's /.bluegrass-meta/ to the sidecars: a person's own
    folder of that name is said to be unsynced, never silently left out. Deeper down the
    name is an ordinary one."""
    (tmp_path / ".bluegrass-meta").mkdir()
    (tmp_path / "sub" / ".bluegrass-meta").mkdir(parents=True)
    found = scan.scan(Path(tmp_path), filters.Excludes([]))
    assert [(f.path, f.kind) for f in found.unsyncable] == [(".bluegrass-meta", "reserved-name")]


@pytest.mark.skipif(os.name != "posix", reason="such names cannot exist on Windows")
def test_scan_warns_about_names_windows_reserves(tmp_path):
    for name in ("CON", "nul.txt", "Com1.log", "console.txt", "lpt10"):
        (tmp_path / name).write_text("x")
    found = scan.scan(Path(tmp_path), filters.Excludes([]))
    assert sorted(f.path for f in found.warnings if f.kind == "windows-reserved-name") == [
        "CON",
        "Com1.log",
        "nul.txt",
    ]


def test_a_skipped_bisync_is_said_in_words_not_as_nothing_copied():
    from bluegrass.laptop import report
    from bluegrass.laptop.bisync import UNCHANGED, Outcome

    skipped = report.outcome_lines("docs", Outcome(OK, UNCHANGED, bisync=False))
    assert skipped == ["docs: ok: nothing changed on either side since the last sync"]
    ran = report.outcome_lines("docs", Outcome(OK, "in sync"))
    assert ran == ["docs: ok: nothing to copy"]
