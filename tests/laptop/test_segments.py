"""`bluegrass segment add|list|remove`, and one-line errors for bad input and bad config."""

from __future__ import annotations

import json

import pytest

from tests.laptop.conftest import Laptop, SftpCloud, one_line_error


def test_add_list_remove(laptop: Laptop):
    docs = laptop.folder("Documents")
    (docs / "keep.txt").write_text("mine\n")
    out = laptop.run(
        "segment", "add", "docs", str(docs), "--exclude", "*.tmp", "--interval", "30"
    ).stdout
    assert "Added segment docs" in out
    laptop.run("segment", "add", "photos", str(laptop.home / "Pictures"))  # may not exist yet

    listed = json.loads(laptop.run("segment", "list", "--json").stdout)
    assert listed == {
        "segments": [
            {
                "segment": "docs",
                "path": str(docs.resolve()),
                "exclude": ["*.tmp"],
                "interval_minutes": 30,
                "max_delete_percent": 50,
                "max_change_percent": 50,
            },
            {
                "segment": "photos",
                "path": str((laptop.home / "Pictures").resolve()),
                "exclude": [],
                "interval_minutes": 15,
                "max_delete_percent": 50,
                "max_change_percent": 50,
            },
        ]
    }
    assert "docs\t" in laptop.run("segment", "list").stdout

    out = laptop.run("segment", "remove", "docs").stdout
    assert "untouched" in out
    assert (docs / "keep.txt").read_text() == "mine\n"  # never deletes the user's files
    names = [
        s["segment"] for s in json.loads(laptop.run("segment", "list", "--json").stdout)["segments"]
    ]
    assert names == ["photos"]


def test_a_relative_path_is_stored_absolute_and_canonical(laptop: Laptop):
    real = laptop.folder("real")
    (laptop.home / "link").symlink_to(real)
    laptop.run("segment", "add", "docs", "link")  # relative to the current folder (home)
    listed = json.loads(laptop.run("segment", "list", "--json").stdout)["segments"]
    assert listed[0]["path"] == str(real.resolve())


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["segment", "add", "My Docs", "x"], "invalid segment name"),
        (["segment", "add", "other", "{home}/file.txt"], "is not a folder"),
        (["segment", "add", "docs2", "{home}/a/b"], "overlaps segment 'docs'"),
        (["segment", "add", "docs2", "{home}"], "overlaps segment 'docs'"),
        (["segment", "add", "docs", "{home}/other"], "already exists"),
        (["segment", "add", "x", "{home}/x", "--interval", "0"], "--interval"),
        (["segment", "add", "x", "{home}/x", "--exclude", "{{unclosed"], "bad exclude pattern"),
        (["segment", "add", "x", "{home}/.config/bluegrass/sub"], "Bluegrass's own folder"),
        (["segment", "remove", "nope"], "no segment named 'nope'"),
        (["sync", "nope"], "not enrolled"),
        (["status", "--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(laptop: Laptop, args, expected):
    (laptop.home / "file.txt").write_text("x")
    laptop.run("segment", "add", "docs", str(laptop.folder("a")))
    proc = laptop.run(*[a.replace("{home}", str(laptop.home)) for a in args], check=False)
    assert proc.returncode == 2
    assert expected in one_line_error(proc)


def test_sync_needs_a_known_segment_and_at_least_one(enrolled: Laptop):
    proc = enrolled.run("sync", check=False)
    assert proc.returncode == 2
    assert "no segments yet" in one_line_error(proc)
    enrolled.run("segment", "add", "docs", str(enrolled.folder("docs")))
    proc = enrolled.run("sync", "photos", check=False)
    assert proc.returncode == 2
    assert "no segment named 'photos'" in one_line_error(proc)
    proc = enrolled.run("sync", "--confirm-deletes", check=False)
    assert proc.returncode == 2
    assert "need a SEGMENT" in one_line_error(proc)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[sync]\ninterval_minutes = 0\n", "sync.interval_minutes: expected a whole number"),
        ("[sync]\nmax_delete_percent = true\n", "sync.max_delete_percent: expected"),
        (
            '[segments.docs]\npath = "/x"\nmax_change_percent = 0\n',
            "segments.docs.max_change_percent: expected a whole percentage from 1 to 100",
        ),
        ("[sync]\nmax_change_percent = 101\n", "sync.max_change_percent: expected a whole"),
        ("[sync]\nintervall = 5\n", "unknown key 'sync.intervall'"),
        ('[segments.docs]\nexclude = ["*.tmp"]\n', "segments.docs.path: expected an absolute"),
        ('[segments.docs]\npath = "relative/x"\n', "segments.docs.path: expected an absolute"),
        ('[segments."My Docs"]\npath = "/x"\n', "segments.My Docs: expected a segment name"),
        ('[server]\nhost = "example.org"\n', "server."),
        ("[sync\n", "not valid TOML"),
    ],
)
def test_bad_config_names_file_key_and_expectation(laptop: Laptop, text, expected):
    config = laptop.config_dir / "bluegrass.toml"
    config.parent.mkdir(parents=True)
    config.write_text(text)
    for args in (["status"], ["segment", "list"], ["sync"]):
        proc = laptop.run(*args, check=False)
        assert proc.returncode == 2
        line = one_line_error(proc)
        assert str(config) in line
        assert expected in line


def test_removing_a_segment_forgets_its_sync_state_only(enrolled: Laptop, cloud: SftpCloud):
    docs = enrolled.folder("docs")
    (docs / "a.txt").write_text("a\n")
    enrolled.run("segment", "add", "docs", str(docs))
    enrolled.run("sync")
    assert enrolled.workdir("docs").is_dir()
    enrolled.run("segment", "remove", "docs")
    assert not enrolled.workdir("docs").exists()
    assert (docs / "a.txt").exists()
    assert (cloud.root / "docs" / "a.txt").exists()


def test_status_json_has_the_documented_shape(enrolled: Laptop, cloud: SftpCloud):
    """docs/cli.md documents these fields; they may grow, never shrink or be renamed."""
    enrolled.run("segment", "add", "docs", str(enrolled.folder("docs")))
    status = enrolled.status()
    assert set(status) >= {"version", "enrolled", "server", "daemon", "segments"}
    assert status["version"] == 1 and status["enrolled"] is True
    assert set(status["server"]) >= {"host", "sftp_port", "user", "device"}
    assert status["daemon"] == {"running": False, "pid": None}
    seg = status["segments"][0]
    assert set(seg) >= {
        "segment", "path", "remote", "interval_minutes", "max_delete_percent", "max_change_percent",
        "established",
        "last_run", "last_ok", "failures", "next_run", "needs_attention", "unsyncable",
        "warnings",
    }  # fmt: skip
    assert seg["last_run"] is None and seg["established"] is False
    enrolled.run("sync")
    seg = enrolled.status()["segments"][0]
    assert seg["established"] is True
    assert set(seg["last_run"]) >= {
        "started", "finished", "outcome", "message", "action", "command", "resync",
        "exit_code", "files_transferred", "bytes_transferred", "deletes", "conflicts",
    }  # fmt: skip
    assert seg["last_run"]["outcome"] in ("ok", "retry", "needs-user", "locked-out")

    synced = json.loads(enrolled.run("sync", "--json").stdout)
    assert [s["segment"] for s in synced["segments"]] == ["docs"]
    assert synced["segments"][0]["outcome"] == "ok"
