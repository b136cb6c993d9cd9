"""The first-boot settings file: what is accepted, what is refused, what is written, and that
the secrets do not stay on the boot partition. (In the real rootfs: test_rootfs.py.)"""

from __future__ import annotations

import os
import subprocess
import tomllib
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.image.conftest import files, firstboot_module

fb = firstboot_module()
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHkmCX3NfqxtUWnbYt8Jgbx6s9ouLD/zjHIaGD/SUpM6 me@laptop"


def test_shipped_file_has_no_settings_and_parses() -> None:
    settings = fb.parse(files("01-bluegrass", "files", "bluegrass.toml").read_text())
    assert settings.empty()


def test_shipped_file_uncommented_is_a_valid_example() -> None:
    text = files("01-bluegrass", "files", "bluegrass.toml").read_text()
    lines = [
        ln[1:] if ln.startswith("#") and not ln.startswith("# ") and ln != "#" else ln
        for ln in text.splitlines()
    ]
    uncommented = "\n".join(ln for ln in lines if not ln.startswith("#"))
    uncommented = uncommented.replace('"bg1-..."', '"bg1-abc"').replace(
        '"ssh-ed25519 AAAA... me@laptop"', f'"{KEY}"'
    )
    settings = fb.parse(uncommented)
    assert settings.hostname == "bluegrass"
    assert settings.wifi.country == "GB"
    assert settings.enroll_code == "bg1-abc"


def test_full_settings() -> None:
    settings = fb.parse(
        'hostname = "den-pi"\ntimezone = "Europe/Paris"\n'
        '[wifi]\nssid = "Home"\npassword = "12345678"\ncountry = "FR"\nhidden = true\n'
        '[enroll]\ncode = " bg1-xyz "\n'
        f'[ssh]\nauthorized_keys = "{KEY}"\n'
    )
    assert settings.hostname == "den-pi"
    assert settings.wifi == fb.Wifi("Home", "12345678", "FR", True)
    assert settings.enroll_code == "bg1-xyz"
    assert settings.authorized_keys == [KEY]


def test_open_network_and_hex_psk() -> None:
    assert fb.parse('[wifi]\nssid = "Cafe"\ncountry = "US"\n').wifi.password is None
    psk = "a" * 64
    assert (
        fb.parse(f'[wifi]\nssid = "x"\npassword = "{psk}"\ncountry = "US"\n').wifi.password == psk
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hostname = ", "not valid TOML"),
        ('hostnme = "x"', "unknown setting 'hostnme'"),
        ('[wifi]\nssid = "x"\ncountry = "GB"\npasword = "12345678"', "[wifi] pasword: unknown"),
        ('hostname = "Bad_Name"', "hostname: 'Bad_Name' is not a valid name"),
        ('hostname = "-pi"', "is not a valid name"),
        ("hostname = 5", "expected a string"),
        ('timezone = "../../etc/passwd"', "not a time zone name"),
        ('[wifi]\ncountry = "GB"', "[wifi] ssid: the network's name is missing"),
        ('[wifi]\nssid = "x"\npassword = "short"\ncountry = "GB"', "8 to 63"),
        ('[wifi]\nssid = "x"\npassword = "12345678"', "[wifi] country: missing"),
        ('[wifi]\nssid = "x"\ncountry = "gb"', "not a two-letter code"),
        ('[wifi]\nssid = "x"\ncountry = "GB"\nhidden = "no"', "expected true or false"),
        (f'[wifi]\nssid = "{"x" * 33}"\ncountry = "GB"', "at most 32 bytes"),
        ('[enroll]\ncode = "hello"', "starting with bg1-"),
        ('[enroll]\ncloud_url = "ftp://x"', "not an address like https://"),
        ('[enroll]\ncloud_url = "https://x/path?q"', "not an address like https://"),
        ('[enroll]\ncloud_url = "http://x:8080"', "not an address like https://"),
        ('[ssh]\nauthorized_keys = ["my password"]', "is not a public key line"),
        ('[ssh]\nauthorized_keys = ["ssh-ed25519 AAAAB3NzaC1yc2E= x"]', "is damaged"),
        ('[ssh]\nauthorized_keys = ["ssh-ed25519 !!!"]', "is damaged"),
        ("wifi = 3", "expected a section [wifi]"),
    ],
)
def test_mistakes_refused_with_the_key_named(text: str, message: str) -> None:
    with pytest.raises(fb.SettingsError) as caught:
        fb.parse(text)
    assert message in str(caught.value)


def test_wifi_keyfile_escapes_and_has_no_security_for_open_networks() -> None:
    text = fb.wifi_keyfile(fb.Wifi(" My;net\\", "pa;ss word", "GB"), "uuid-1")
    assert "ssid=\\sMy\\;net\\\\" in text
    assert "psk=pa\\;ss word" in text
    assert "uuid=uuid-1" in text
    assert "[wifi-security]" not in fb.wifi_keyfile(fb.Wifi("Cafe", None, "GB"), "u")


def test_hosts_line_replaced_or_added() -> None:
    assert fb.hosts_with_name("127.0.0.1 localhost\n127.0.1.1 raspberrypi\n", "pi") == (
        "127.0.0.1 localhost\n127.0.1.1\tpi\n"
    )
    assert fb.hosts_with_name("127.0.0.1 localhost\n", "pi").endswith("127.0.1.1\tpi\n")


class Recorder:
    def __init__(self, fail: set[str] | None = None) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail or set()

    def __call__(self, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(args))
        failing = any(word in self.fail for word in args)
        return subprocess.CompletedProcess(
            list(args), 1 if failing else 0, "Enrolled as alice on example\n", "bad code\n"
        )


def fake_root(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "root"
    boot = root / "boot/firmware"
    boot.mkdir(parents=True)
    (root / "etc/bluegrass").mkdir(parents=True)
    (root / "etc/bluegrass/admin-user").write_text("admin\n")
    (root / "etc/hosts").write_text("127.0.0.1\tlocalhost\n")
    uid, gid = os.getuid(), os.getgid()
    (root / "etc/passwd").write_text(f"admin:x:{uid}:{gid}::/home/admin:/bin/bash\n")
    (root / "usr/share/zoneinfo/Europe").mkdir(parents=True)
    (root / "usr/share/zoneinfo/Europe/Paris").write_text("TZif")
    return root, boot


def test_applied_once_secrets_erased(tmp_path: Path) -> None:
    root, boot = fake_root(tmp_path)
    config = boot / "bluegrass.toml"
    config.write_text(
        'hostname = "den-pi"\ntimezone = "Europe/Paris"\n'
        '[wifi]\nssid = "Home"\npassword = "hunter2hunter2"\ncountry = "FR"\n'
        '[enroll]\ncode = "bg1-secretcode"\n'
        f'[ssh]\nauthorized_keys = ["{KEY}"]\n'
    )
    run = Recorder()
    argv = ["--boot", str(boot), "--root", str(root), "--appliance", "/opt/x/bluegrass-appliance"]
    assert fb.main(argv, run=run) == 0
    assert not config.exists()
    applied = (boot / "bluegrass-applied.txt").read_text()
    assert "hunter2" not in applied and "secretcode" not in applied
    assert "Enrolled as alice" in applied and "den-pi" in applied
    assert (root / "etc/hostname").read_text() == "den-pi\n"
    assert os.readlink(root / "etc/localtime") == "/usr/share/zoneinfo/Europe/Paris"
    wifi = root / fb.WIFI_CONNECTION
    assert wifi.stat().st_mode & 0o777 == 0o600 and "psk=hunter2hunter2" in wifi.read_text()
    assert (root / "home/admin/.ssh/authorized_keys").read_text() == KEY + "\n"
    commands = [c[0] if c[0] != "env" else c[2] for c in run.calls]
    assert commands == ["ssh-keygen", "systemctl", "/opt/x/bluegrass-appliance", "systemctl"]
    assert run.calls[1] == ["systemctl", f"--root={root}", "enable", "ssh.service"]
    assert run.calls[2][:2] == [
        "env",
        f"BLUEGRASS_APPLIANCE_STATE={root}/var/lib/bluegrass-appliance",
    ]
    assert run.calls[2][3:] == ["enroll", "bg1-secretcode"]
    assert run.calls[3] == ["systemctl", f"--root={root}", "disable", "bluegrass-firstboot.service"]


def test_cloud_url_added_to_the_shipped_settings_before_enrolling(tmp_path: Path) -> None:
    root, boot = fake_root(tmp_path)
    config = root / "var/lib/bluegrass-appliance/bluegrass-appliance.toml"
    config.parent.mkdir(parents=True, mode=0o700)
    shipped = files("01-bluegrass", "files", "bluegrass-appliance.toml").read_text()
    config.write_text(shipped)
    (boot / "bluegrass.toml").write_text(
        '[enroll]\ncode = "bg1-x"\ncloud_url = "https://backup.example.org/"\n'
    )
    run = Recorder()
    assert fb.main(["--boot", str(boot), "--root", str(root)], run=run) == 0
    merged = tomllib.loads(config.read_text())
    assert merged == {
        "panel": {"port": 80, "console_issue": "/etc/issue.d/bluegrass-setup.issue"},
        "cloud": {"url": "https://backup.example.org"},
    }
    assert config.read_text().startswith(shipped)
    enroll = [i for i, call in enumerate(run.calls) if "enroll" in call]
    assert enroll, run.calls
    # A [cloud] section already there is not touched; the summary says what to do.
    (boot / "bluegrass.toml").write_text('[enroll]\ncloud_url = "https://other.example.org"\n')
    assert fb.main(["--boot", str(boot), "--root", str(root)], run=run) == 0
    assert "other.example.org" not in config.read_text()
    assert "by hand" in (boot / "bluegrass-applied.txt").read_text()


def test_cloud_url_without_settings_file(tmp_path: Path) -> None:
    root, boot = fake_root(tmp_path)
    (boot / "bluegrass.toml").write_text('[enroll]\ncloud_url = "https://10.1.2.3:8443"\n')
    assert fb.main(["--boot", str(boot), "--root", str(root)], run=Recorder()) == 0
    config = root / "var/lib/bluegrass-appliance/bluegrass-appliance.toml"
    assert config.read_text() == '[cloud]\nurl = "https://10.1.2.3:8443"\n'
    assert (config.parent.stat().st_mode & 0o777) == 0o700


def test_bad_code_still_erased_and_reported(tmp_path: Path) -> None:
    root, boot = fake_root(tmp_path)
    (boot / "bluegrass.toml").write_text('[enroll]\ncode = "bg1-bad"\n')
    assert fb.main(["--boot", str(boot), "--root", str(root)], run=Recorder(fail={"enroll"})) == 0
    assert not (boot / "bluegrass.toml").exists()
    applied = (boot / "bluegrass-applied.txt").read_text()
    assert "not accepted (bad code)" in applied and "bg1-bad" not in applied


def test_mistake_leaves_everything_and_says_why(tmp_path: Path) -> None:
    root, boot = fake_root(tmp_path)
    (boot / "bluegrass.toml").write_text('hostname = "den-pi"\n[wifi]\nssid = "x"\n')
    run = Recorder()
    assert fb.main(["--boot", str(boot), "--root", str(root)], run=run) == 1
    assert (boot / "bluegrass.toml").exists()
    assert "[wifi] country: missing" in (boot / "bluegrass-error.txt").read_text()
    assert not (root / "etc/hostname").exists()
    assert run.calls == []  # not even disabled: the corrected file is applied next boot
    (boot / "bluegrass.toml").write_text('hostname = "den-pi"\n')
    assert fb.main(["--boot", str(boot), "--root", str(root)], run=run) == 0
    assert not (boot / "bluegrass-error.txt").exists()


def test_all_commented_out_waits(tmp_path: Path) -> None:
    root, boot = fake_root(tmp_path)
    shipped = files("01-bluegrass", "files", "bluegrass.toml").read_text()
    (boot / "bluegrass.toml").write_text(shipped)
    run = Recorder()
    assert fb.main(["--boot", str(boot), "--root", str(root)], run=run) == 0
    assert (boot / "bluegrass.toml").read_text() == shipped
    assert run.calls == []  # the unit stays enabled


def test_live_system_sets_the_running_name_and_unblocks_wifi(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the Pi itself (root /): the running host name, and the Wi-Fi country through
    raspi-config (Raspberry Pi OS), iw and rfkill where they exist."""
    root, _boot = fake_root(tmp_path)
    names: list[str] = []
    monkeypatch.setattr(fb.socket, "sethostname", names.append)
    monkeypatch.setattr(fb.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    run = Recorder()
    applier = fb.Applier(root=root, live=True, run=run)
    applier.apply(fb.parse('hostname = "den-pi"\n[wifi]\nssid = "x"\ncountry = "NL"\n'))
    assert names == ["den-pi"]
    assert run.calls == [
        ["raspi-config", "nonint", "do_wifi_country", "NL"],
        ["iw", "reg", "set", "NL"],
        ["rfkill", "unblock", "wifi"],
    ]
    assert applier.problems == []
