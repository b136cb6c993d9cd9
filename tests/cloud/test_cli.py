"""The cloud command line, driven as a user would: real processes on a real data root."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.cloud.conftest import Run, one_line_error, tree_state

SUBCOMMANDS = [
    [],
    ["init"],
    ["user"],
    ["user", "add"],
    ["user", "list"],
    ["user", "remove"],
    ["commit"],
    ["log"],
    ["restore"],
    ["verify"],
    ["maintain"],
    ["web"],
    ["web", "setup-code"],
]


@pytest.mark.parametrize("words", SUBCOMMANDS, ids=lambda w: " ".join(w) or "top")
def test_every_subcommand_has_help(cloud: Run, words: list[str]) -> None:
    proc = cloud(*words, "--help")
    assert proc.stdout.startswith("usage: bluegrass-cloud")


def make_user(cloud: Run, data: Path, user: str = "alice", segment: str = "docs") -> Path:
    cloud("init")
    cloud("user", "add", user)
    tree = data / "files" / user / segment
    tree.mkdir()
    return tree


def test_commit_log_restore_round_trip(cloud: Run, data: Path, tmp_path: Path) -> None:
    tree = make_user(cloud, data)
    (tree / "letter.txt").write_text("first draft\n")
    (tree / "keep.bin").write_bytes(os.urandom(5000))
    yesterday = (datetime.now().astimezone() - timedelta(days=1)).isoformat()
    first = json.loads(cloud("commit", "--date", yesterday, "--json").stdout)
    assert first["errors"] == []
    assert [s["committed"] for s in first["segments"]] == [True]
    (tree / "letter.txt").write_text("final version\n")
    (tree / "new.txt").write_text("new\n")
    second = json.loads(cloud("commit", "--user", "alice", "--segment", "docs", "--json").stdout)
    assert (second["segments"][0]["added"], second["segments"][0]["changed"]) == (1, 1)

    log = json.loads(cloud("log", "alice", "docs", "--json").stdout)["snapshots"]
    assert [s["commit"] for s in log] == [
        second["segments"][0]["commit"],
        first["segments"][0]["commit"],
    ]
    assert log[1]["added"] == 2 and log[0]["changed"] == 1
    assert set(log[0]) >= {
        "commit",
        "date",
        "summary",
        "added",
        "changed",
        "deleted",
        "files",
        "bytes",
        "suspicious",
    }

    day = yesterday[:10]
    cloud("restore", "alice", "docs", "--at", day, "--to", str(tmp_path / "old"))
    assert (tmp_path / "old" / "letter.txt").read_text() == "first draft\n"
    assert not (tmp_path / "old" / "new.txt").exists()
    assert (tmp_path / "old" / "keep.bin").read_bytes() == (tree / "keep.bin").read_bytes()

    cloud("restore", "alice", "docs", "letter.txt", "--to", str(tmp_path / "one"))
    assert (tmp_path / "one" / "letter.txt").read_text() == "final version\n"
    assert cloud("verify").returncode == 0


def test_no_change_means_no_commit(cloud: Run, data: Path) -> None:
    tree = make_user(cloud, data)
    (tree / "a.txt").write_text("a")
    cloud("commit")
    again = json.loads(cloud("commit", "--json").stdout)["segments"][0]
    assert again["committed"] is False
    assert len(json.loads(cloud("log", "alice", "docs", "--json").stdout)["snapshots"]) == 1
    checks = (data / "repos" / "alice" / "docs.git" / "bluegrass" / "checks.jsonl").read_text()
    assert [json.loads(line)["committed"] for line in checks.splitlines()] == [True, False]


def test_data_root_from_environment(tmp_path: Path, cloud: Run) -> None:
    other = tmp_path / "from-env"
    proc = cloud("init", env={"BLUEGRASS_DATA": str(other)})
    # --data on the command line wins over the environment
    assert str(other) not in proc.stdout
    import subprocess

    from tests.conftest import VENV_BIN

    subprocess.run(
        [str(VENV_BIN / "bluegrass-cloud"), "init"],
        env={**os.environ, "BLUEGRASS_DATA": str(other)},
        check=True,
        capture_output=True,
    )
    assert (other / "bluegrass-cloud.toml").is_file()


def test_suspicious_snapshot_is_flagged(cloud: Run, data: Path) -> None:
    tree = make_user(cloud, data)
    for i in range(10):
        (tree / f"f{i}.txt").write_text(str(i))
    cloud("commit")
    for i in range(4):
        (tree / f"f{i}.txt").unlink()
    out = json.loads(cloud("commit", "--json").stdout)["segments"][0]
    assert out["committed"] and out["suspicious"] and out["deleted"] == 4
    assert json.loads(cloud("log", "alice", "docs", "--json").stdout)["snapshots"][0]["suspicious"]


def test_per_segment_threshold_from_config(cloud: Run, data: Path) -> None:
    tree = make_user(cloud, data)
    (data / "bluegrass-cloud.toml").write_text('[segments."alice/docs"]\nsuspicious_share = 0.5\n')
    for i in range(10):
        (tree / f"f{i}.txt").write_text(str(i))
    cloud("commit")
    for i in range(4):
        (tree / f"f{i}.txt").unlink()
    assert json.loads(cloud("commit", "--json").stdout)["segments"][0]["suspicious"] is False


def test_strays_are_reported_not_ignored(cloud: Run, data: Path) -> None:
    tree = make_user(cloud, data)
    (tree / "ok.txt").write_text("ok")
    (data / "files" / "alice" / "loose.txt").write_text("not in a segment")
    (data / "files" / "alice" / "My Docs").mkdir()
    proc = cloud("commit", check=False)
    assert proc.returncode == 1
    assert "loose.txt" in proc.stderr and "My Docs" in proc.stderr
    assert "alice/docs: committed" in proc.stdout


def test_user_add_list_remove(cloud: Run, data: Path) -> None:
    make_user(cloud, data)
    cloud("user", "add", "bob")
    users = json.loads(cloud("user", "list", "--json").stdout)["users"]
    # No quota unless an administrator sets one; "used" is what each occupies, in bytes.
    assert [{**u, "used": type(u["used"])} for u in users] == [
        {"user": "alice", "segments": ["docs"], "web": None, "quota": None, "used": int},
        {"user": "bob", "segments": [], "web": None, "quota": None, "used": int},
    ]  # no web login yet
    cloud("user", "remove", "bob")
    (data / "files" / "alice" / "docs" / "x").write_text("x")
    refused = cloud("user", "remove", "alice", check=False)
    assert "--delete-data" in one_line_error(refused)
    assert (data / "files" / "alice" / "docs" / "x").exists()
    cloud("user", "remove", "alice", "--delete-data")
    assert json.loads(cloud("user", "list", "--json").stdout)["users"] == []


def test_verify_finds_a_damaged_object(cloud: Run, data: Path) -> None:
    tree = make_user(cloud, data)
    (tree / "precious.txt").write_text("only copy\n")
    cloud("commit")
    assert cloud("verify").returncode == 0
    repo = data / "repos" / "alice" / "docs.git"
    loose = [p for p in (repo / "objects").glob("??/*")]
    assert loose, "a fresh commit leaves loose objects"
    for obj in loose:
        obj.chmod(0o644)
        obj.write_bytes(b"garbage")
    proc = cloud("verify", "--json", check=False)
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["ok"] is False and report["repositories"][0]["problems"]


def test_maintain_packs_loose_objects(cloud: Run, data: Path) -> None:
    tree = make_user(cloud, data)
    for i in range(20):
        (tree / f"{i}.txt").write_text(f"file {i}\n")
    cloud("commit")
    repo = data / "repos" / "alice" / "docs.git"
    assert list((repo / "objects").glob("??/*"))
    cloud("maintain")
    assert not list((repo / "objects").glob("??/*"))
    assert (repo / "objects" / "info" / "commit-graph").exists() or list(
        (repo / "objects" / "info").glob("commit-graphs/*")
    )
    assert cloud("verify").returncode == 0


# -- bad input: one clear line, non-zero exit, nothing written --------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("[snapshot\nsuspicious_share = 0.3\n", "not valid TOML"),
        ("[snapshot]\nsuspicous_share = 0.3\n", "unknown key 'snapshot.suspicous_share'"),
        (
            "[snapshot]\nsuspicious_share = 3\n",
            "snapshot.suspicious_share: expected a number above 0",
        ),
        ('[schedule]\ncommit_at = "25:00"\n', 'schedule.commit_at: expected a local time "HH:MM"'),
        ('[segments."Alice/docs"]\nsuspicious_share = 0.5\n', "segments.Alice/docs: expected"),
    ],
)
def test_malformed_config_is_refused(cloud: Run, data: Path, content: str, expected: str) -> None:
    tree = make_user(cloud, data)
    (tree / "a.txt").write_text("a")
    config = data / "bluegrass-cloud.toml"
    config.write_text(content)
    line = one_line_error(cloud("commit", check=False))
    assert str(config) in line and expected in line
    assert not (data / "repos" / "alice").exists()


def test_unknown_user_and_segment(cloud: Run, data: Path, tmp_path: Path) -> None:
    tree = make_user(cloud, data)
    (tree / "a.txt").write_text("a")
    cloud("commit")
    assert "unknown user 'bob'" in one_line_error(cloud("log", "bob", "docs", check=False))
    assert "unknown segment alice/nope" in one_line_error(
        cloud("log", "alice", "nope", check=False)
    )
    line = one_line_error(
        cloud("restore", "alice", "nope", "--to", str(tmp_path / "t"), check=False)
    )
    assert "alice/nope" in line
    assert "invalid user name" in one_line_error(cloud("commit", "--user", "../etc", check=False))
    assert not (tmp_path / "t").exists()


def test_restore_into_live_tree_is_refused(cloud: Run, data: Path) -> None:
    tree = make_user(cloud, data)
    (tree / "a.txt").write_text("a")
    cloud("commit")
    before = tree_state(data)
    for target in (tree / "restored", data / "files" / "alice" / "other", data / "repos" / "x"):
        line = one_line_error(cloud("restore", "alice", "docs", "--to", str(target), check=False))
        assert "inside the data root" in line
    assert tree_state(data) == before


def test_date_before_first_snapshot(cloud: Run, data: Path, tmp_path: Path) -> None:
    tree = make_user(cloud, data)
    (tree / "a.txt").write_text("a")
    cloud("commit")
    target = tmp_path / "old"
    line = one_line_error(
        cloud("restore", "alice", "docs", "--at", "2001-01-01", "--to", str(target), check=False)
    )
    assert "no snapshot at or before 2001-01-01" in line
    assert not target.exists()
    # git reads dates up to 1970-01-02 as no limit at all and answered with the newest
    # snapshot (issue 13, finding 13, on the command line).
    for early in ("1900-01-01", "1969-12-31", "1970-01-02"):
        line = one_line_error(
            cloud("restore", "alice", "docs", "--at", early, "--to", str(target), check=False)
        )
        assert f"no snapshot at or before {early}" in line
        assert not target.exists()
    assert not [p for p in tmp_path.iterdir() if "bluegrass-restore" in p.name]
    bad = one_line_error(
        cloud("restore", "alice", "docs", "--at", "last tuesday", "--to", str(target), check=False)
    )
    assert "not a commit or a date" in bad


def test_restore_refuses_non_empty_target(cloud: Run, data: Path, tmp_path: Path) -> None:
    tree = make_user(cloud, data)
    (tree / "a.txt").write_text("a")
    cloud("commit")
    target = tmp_path / "busy"
    target.mkdir()
    (target / "mine.txt").write_text("mine")
    assert "not empty" in one_line_error(
        cloud("restore", "alice", "docs", "--to", str(target), check=False)
    )
    assert [p.name for p in target.iterdir()] == ["mine.txt"]


def test_commit_date_before_last_snapshot_is_refused(cloud: Run, data: Path) -> None:
    tree = make_user(cloud, data)
    (tree / "a.txt").write_text("a")
    cloud("commit")
    (tree / "a.txt").write_text("b")
    proc = cloud("commit", "--date", "2001-01-01", check=False)
    assert "before the last snapshot" in proc.stderr
    assert len(json.loads(cloud("log", "alice", "docs", "--json").stdout)["snapshots"]) == 1


def test_uninitialised_data_root(cloud: Run, data: Path) -> None:
    assert "no Bluegrass data root" in one_line_error(cloud("user", "list", check=False))
    assert not data.exists()


def test_usage_error_is_one_line(cloud: Run) -> None:
    proc = cloud("restore", "alice", check=False)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
