"""The pi-gen stage applied through the shim to a Debian trixie amd64 root file system.

mmdebstrap builds a minimal rootfs from Debian's archive (minbase, plus what Raspberry Pi OS
Lite already has that the stage relies on: systemd, udev, openssh-server, sudo), the stage
runs through image/shim/pigen-shim.sh exactly as pi-gen would run it, and the result is
checked from the inside: the rootfs's own systemd, udev and Python. Downloaded .debs are kept
in build/image-cache/ (git-ignored) for the next run.

The checks share one rootfs (about 2 minutes to build with an empty cache). The first-boot
test changes it, so it comes last.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import VENV_BIN, require_tool
from tests.image.conftest import image_module, require_root
from tests.support.net import free_port

pytestmark = [pytest.mark.slow, pytest.mark.root]

# What Raspberry Pi OS Lite (pi-gen stage0-2) has that the stage uses or changes.
LITE_STANDIN = ["systemd", "systemd-sysv", "udev", "openssh-server", "sudo"]
UNSHARE = ["unshare", "--mount", "--propagation", "private"]
OUR_UNITS = ["bluegrass-appliance.service", "bluegrass-firstboot.service"]


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_root()
    for tool in ("mmdebstrap", "unshare", "chroot"):
        require_tool(tool)
    build = image_module("debian_image")
    work = tmp_path_factory.mktemp("image-rootfs")
    root = work / "rootfs"
    started = time.monotonic()
    build.base_rootfs(
        "amd64", "trixie", LITE_STANDIN + build.stage_packages(), root, keep_tarball=False
    )
    stage = build.stage_copy(work, "amd64", ["3.13"])
    build.apply_stage(root, stage)
    print(f"rootfs built and staged in {time.monotonic() - started:.0f} s")
    return root


def in_root(root: Path, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a command inside the rootfs with /proc mounted (private mount and UTS namespace)."""
    script = 'mount -t proc proc "$1/proc" && r="$1" && shift && exec chroot "$r" "$@"'
    return subprocess.run(
        [*UNSHARE, "--uts", "sh", "-c", script, "sh", str(root), *args],
        capture_output=True,
        text=True,
        **kwargs,  # type: ignore[arg-type]
    )


def test_services_enabled_at_build_time(rootfs: Path) -> None:
    system = rootfs / "etc/systemd/system"
    for wants, unit in [
        ("multi-user.target.wants", "bluegrass-appliance.service"),
        ("multi-user.target.wants", "bluegrass-firstboot.service"),
        ("multi-user.target.wants", "avahi-daemon.service"),
    ]:
        link = system / wants / unit
        assert link.is_symlink(), f"{unit} is not enabled ({link} missing)"
        target = Path(os.readlink(link))
        assert (rootfs / target.relative_to("/")).is_file(), f"{link} -> {target} dangles"


def test_ssh_off_and_no_host_keys(rootfs: Path) -> None:
    assert (rootfs / "usr/lib/systemd/system/ssh.service").exists()
    enabled = [p for p in (rootfs / "etc/systemd/system").rglob("ssh.s*") if p.is_symlink()]
    assert enabled == [], f"SSH is enabled: {enabled}"
    assert list((rootfs / "etc/ssh").glob("ssh_host_*")) == []
    sshd = (rootfs / "etc/ssh/sshd_config.d/10-bluegrass.conf").read_text()
    assert "PasswordAuthentication no" in sshd
    done = in_root(rootfs, "/usr/sbin/sshd", "-T", "-f", "/etc/ssh/sshd_config")
    # sshd -T refuses to run without host keys; what matters is the config it parsed.
    if done.returncode == 0:
        assert "passwordauthentication no" in done.stdout
        assert "permitrootlogin no" in done.stdout


def test_no_password_on_any_account(rootfs: Path) -> None:
    for line in (rootfs / "etc/shadow").read_text().splitlines():
        name, password = line.split(":")[:2]
        assert not password.startswith("$"), f"{name} has a password hash"
        assert password in ("*", "!*", "!") or password.startswith(("!", "*")), (name, password)
    shadow = {
        ln.split(":")[0]: ln.split(":")[1]
        for ln in (rootfs / "etc/shadow").read_text().splitlines()
    }
    assert shadow["root"].startswith("!"), "root is not locked"
    assert shadow["admin"] == "*"
    sudoers = (rootfs / "etc/sudoers.d/010_bluegrass-admin").read_text()
    assert sudoers.strip() == "admin ALL=(ALL) NOPASSWD: ALL"
    assert (rootfs / "etc/sudoers.d/010_bluegrass-admin").stat().st_mode & 0o777 == 0o440
    assert in_root(rootfs, "visudo", "-c").returncode == 0


def test_systemd_analyze_verify_is_clean(rootfs: Path) -> None:
    units = [f"/etc/systemd/system/{u}" for u in OUR_UNITS]
    done = in_root(rootfs, "systemd-analyze", "verify", "--man=no", *units, "ssh.service")
    assert done.returncode == 0, done.stderr
    ours = [ln for ln in (done.stdout + done.stderr).splitlines() if "bluegrass" in ln]
    assert ours == [], "\n".join(ours)
    # The check really checks: a unit whose program is missing is refused here.
    broken = rootfs / "etc/systemd/system/broken-check.service"
    broken.write_text("[Service]\nExecStart=/opt/bluegrass/bin/bluegrass-applaince run\n")
    try:
        done = in_root(
            rootfs,
            "systemd-analyze",
            "verify",
            "--man=no",
            "/etc/systemd/system/broken-check.service",
        )
        assert done.returncode != 0
    finally:
        broken.unlink()


def test_udev_rules_verify(rootfs: Path) -> None:
    rules = "/etc/udev/rules.d/70-bluegrass-drive.rules"
    done = in_root(rootfs, "udevadm", "verify", "--help")
    if done.returncode != 0:
        pytest.fail(f"the rootfs's udevadm has no verify (trixie's systemd 257 has): {done.stderr}")
    done = in_root(rootfs, "udevadm", "verify", rules)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Fail:    0" in done.stdout
    misspelt = rootfs / "etc/udev/rules.d/61-misspelt.rules"
    misspelt.write_text((rootfs / rules.lstrip("/")).read_text().replace("SYMLINK+=", "SYMLNK+="))
    try:
        assert (
            in_root(rootfs, "udevadm", "verify", "/etc/udev/rules.d/61-misspelt.rules").returncode
            != 0
        )
    finally:
        misspelt.unlink()


def test_udev_rule_runs_after_the_file_system_is_known(rootfs: Path) -> None:
    """ID_FS_TYPE/ID_FS_LABEL exist only after the rules file that imports blkid: ours must
    sort after it, or it never matches (found by make image-test)."""
    rules = sorted(
        p.name
        for folder in ("usr/lib/udev/rules.d", "etc/udev/rules.d")
        for p in (rootfs / folder).glob("*.rules")
    )
    blkid = [
        name
        for name in rules
        if (rootfs / "usr/lib/udev/rules.d" / name).exists()
        and 'IMPORT{builtin}="blkid"' in (rootfs / "usr/lib/udev/rules.d" / name).read_text()
    ]
    assert blkid, "no udev rules file imports blkid"
    assert rules.index("70-bluegrass-drive.rules") > max(rules.index(n) for n in blkid), blkid


def test_bluegrass_runs_in_the_rootfs_python(rootfs: Path) -> None:
    done = in_root(
        rootfs,
        "/opt/bluegrass/bin/python",
        "-c",
        "import sys, bluegrass.appliance.cli, bluegrass.panel.app, flask, pyudev, psutil, "
        "gunicorn; from bluegrass.core import rclone; print(sys.version_info[:2], rclone.binary())",
    )
    assert done.returncode == 0, done.stderr
    assert "(3, 13)" in done.stdout and "/opt/bluegrass/" in done.stdout
    venv_cfg = (rootfs / "opt/bluegrass/pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in venv_cfg
    assert "/usr/bin" in venv_cfg  # the image's own python3, not the build host's
    for command in (["bluegrass-appliance", "--help"], ["bluegrass-appliance", "run", "--help"]):
        done = in_root(rootfs, f"/opt/bluegrass/bin/{command[0]}", *command[1:])
        assert done.returncode == 0, done.stderr
        assert "usage: bluegrass-appliance" in done.stdout
    rclone_version = in_root(
        rootfs,
        "/opt/bluegrass/bin/python",
        "-c",
        "from bluegrass.core import rclone; import subprocess; "
        "subprocess.run([str(rclone.binary()), 'version'], check=True)",
    )
    assert "rclone v1.75.2" in rclone_version.stdout
    # On sudo's secure_path too.
    done = in_root(
        rootfs,
        "env",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin",
        "bluegrass-appliance",
        "--help",
    )
    assert done.returncode == 0 and "usage: bluegrass-appliance" in done.stdout, done.stderr
    # The wheels were only for installing.
    assert not (rootfs / "var/cache/bluegrass-wheels").exists()


def unit_command(unit: Path) -> tuple[dict[str, str], list[str]]:
    """The Environment= values and the ExecStart= words of a simple unit file."""
    env: dict[str, str] = {}
    exec_start: list[str] = []
    for line in unit.read_text().splitlines():
        if line.startswith("Environment="):
            key, _, value = line.removeprefix("Environment=").partition("=")
            env[key] = value
        elif line.startswith("ExecStart="):
            exec_start = line.removeprefix("ExecStart=").split()
    words = [re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], w) for w in exec_start]
    return env, words


def test_shipped_settings_put_the_panel_on_port_80(rootfs: Path) -> None:
    """Read by the appliance's own settings loader, in the rootfs's Python."""
    state = rootfs / "var/lib/bluegrass-appliance"
    assert state.stat().st_mode & 0o777 == 0o700
    code = (
        "from pathlib import Path; from bluegrass.core import config; "
        "from bluegrass.appliance import settings; "
        "p = Path('/var/lib/bluegrass-appliance') / settings.FILENAME; "
        "c = config.load(p, settings.SCHEMA); print(c.get('panel.port'), c.get('panel.bind'))"
    )
    done = in_root(rootfs, "/opt/bluegrass/bin/python", "-c", code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["80", "0.0.0.0"]


def test_appliance_unit_command_serves_the_panel(rootfs: Path) -> None:
    """The unit's own command and environment, in the rootfs, as on the Pi; only a folder
    stands in for the drive (no device is looked at or mounted) and the panel's port is a
    free one on loopback instead of 80 on every address."""
    env, command = unit_command(rootfs / "etc/systemd/system/bluegrass-appliance.service")
    assert command == ["/opt/bluegrass/bin/bluegrass-appliance", "run"]
    assert env == {"BLUEGRASS_APPLIANCE_STATE": "/var/lib/bluegrass-appliance"}
    (rootfs / "srv/test-drive").mkdir(parents=True, exist_ok=True)
    port = free_port()
    # What on_chroot gives, plus /sys for pyudev.
    script = (
        'r="$1"; shift; mount -t proc proc "$r/proc" && mount --bind -o ro /sys "$r/sys" && '
        'mount --bind /dev "$r/dev" && mount -t tmpfs tmpfs "$r/run" && '
        'mount -t tmpfs tmpfs "$r/tmp" && exec chroot "$r" "$@"'
    )
    proc = subprocess.Popen(
        [
            *UNSHARE,
            *("sh", "-c", script, "sh", str(rootfs)),
            *("env", "-i", "PATH=/usr/bin:/bin", *(f"{k}={v}" for k, v in env.items())),
            *(command[0], "--drive-dir", "/srv/test-drive", *command[1:]),
            *("--panel-bind", "127.0.0.1", "--panel-port", str(port)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        answer = None
        while time.monotonic() < deadline and answer is None:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    answer = (response.status, response.read().decode())
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)  # poll interval; the request decides readiness
        assert answer is not None, "the panel did not answer within 90 s"
        status, body = answer
        assert status == 200
        assert "Bluegrass" in body
    finally:
        proc.terminate()
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0, proc.stdout.read() if proc.stdout else ""


def enrollment_code(tmp: Path) -> str:
    data = tmp / "cloud"
    cloud = str(VENV_BIN / "bluegrass-cloud")
    subprocess.run([cloud, "--data", str(data), "init"], check=True, capture_output=True)
    done = subprocess.run(
        [cloud, "--data", str(data), "user", "add", "alice", "--json"],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout)["enrollment_code"]


def test_first_boot_file_applied_once_inside_the_rootfs(rootfs: Path, tmp_path: Path) -> None:
    """Run last: it changes the rootfs the way the first boot changes the Pi."""
    require_tool("ssh-keygen")
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    public = key.with_suffix(".pub").read_text().strip()
    code = enrollment_code(tmp_path)
    boot = rootfs / "boot/firmware"
    shipped = (boot / "bluegrass.toml").read_text()
    assert all(line.startswith("#") or not line.strip() for line in shipped.splitlines())
    (boot / "bluegrass.toml").write_text(
        'hostname = "den-pi"\ntimezone = "Europe/Berlin"\n'
        '[wifi]\nssid = "Home; net"\npassword = "correct horse battery"\ncountry = "DE"\n'
        f'[enroll]\ncode = "{code}"\n'
        f'[ssh]\nauthorized_keys = ["{public}"]\n'
    )
    done = in_root(rootfs, "/usr/lib/bluegrass/bluegrass-firstboot", "--boot", "/boot/firmware")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "problem" not in done.stderr, done.stderr

    assert not (boot / "bluegrass.toml").exists()
    applied = (boot / "bluegrass-applied.txt").read_text()
    assert "correct horse" not in applied and code not in applied
    assert "den-pi" in applied
    assert (rootfs / "etc/hostname").read_text() == "den-pi\n"
    assert "127.0.1.1\tden-pi" in (rootfs / "etc/hosts").read_text()
    assert os.readlink(rootfs / "etc/localtime") == "/usr/share/zoneinfo/Europe/Berlin"
    wifi = rootfs / "etc/NetworkManager/system-connections/bluegrass-wifi.nmconnection"
    assert wifi.stat().st_mode & 0o777 == 0o600
    assert (
        "ssid=Home\\; net" in wifi.read_text() and "psk=correct horse battery" in wifi.read_text()
    )
    regdom = rootfs / "etc/modprobe.d/bluegrass-wifi-country.conf"
    assert "ieee80211_regdom=DE" in regdom.read_text()
    keys = rootfs / "home/admin/.ssh/authorized_keys"
    assert keys.read_text().strip() == public
    assert keys.stat().st_mode & 0o777 == 0o600
    assert keys.stat().st_uid == int(in_root(rootfs, "id", "-u", "admin").stdout)
    assert (rootfs / "etc/systemd/system/multi-user.target.wants/ssh.service").is_symlink()
    assert list((rootfs / "etc/ssh").glob("ssh_host_ed25519_key"))
    enrollment = rootfs / "var/lib/bluegrass-appliance/enrollment.json"
    assert enrollment.stat().st_mode & 0o777 == 0o600
    assert json.loads(enrollment.read_text())  # stored by the appliance's own enroll
    # Once: the unit is disabled, and nothing is left to apply.
    assert not (
        rootfs / "etc/systemd/system/multi-user.target.wants/bluegrass-firstboot.service"
    ).exists()
    again = in_root(rootfs, "/usr/lib/bluegrass/bluegrass-firstboot", "--boot", "/boot/firmware")
    assert again.returncode == 0 and "nothing to do" in again.stdout
