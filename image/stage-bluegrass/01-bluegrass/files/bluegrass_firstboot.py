#!/usr/bin/python3
"""Apply /boot/firmware/bluegrass.toml once, at the appliance's first boot.

Installed as /usr/lib/bluegrass/bluegrass-firstboot and run by bluegrass-firstboot.service.
It runs with the image's own python3 (3.11 or later: tomllib) and nothing from Bluegrass's
venv, so it also works when the venv is broken.

What it does, in this order, for the settings present in the file:

- `hostname`: /etc/hostname, the 127.0.1.1 line of /etc/hosts, and the running host name
  (avahi starts after this, so the panel answers at http://HOSTNAME.local);
- `timezone`: /etc/localtime and /etc/timezone;
- `[wifi]`: a NetworkManager connection (0600), the Wi-Fi country (regulatory domain) for
  cfg80211, and Wi-Fi unblocked;
- `[ssh] authorized_keys`: the admin account's authorized_keys, fresh host keys, SSH enabled
  and started (SSH is off otherwise, and takes keys only);
- `[enroll] cloud_url`: the appliance's `cloud.url` (another https address of the cloud's
  device port, such as a port forward; its key must still match the code's pin), written
  before enrolling;
- `[enroll] code`: `bluegrass-appliance enroll CODE`.

Then the file is overwritten with zeros and removed, a summary without secrets is left in
bluegrass-applied.txt, and the service disables itself. A file with a mistake
is not applied at all: the reason goes to bluegrass-error.txt beside it, the exit status is 1,
and the unit stays enabled so that a corrected file is applied at the next boot. A file whose
settings are all commented out (as shipped) is left alone: nothing to apply yet.
"""

from __future__ import annotations

import argparse
import base64
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tomllib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

CONFIG_NAME = "bluegrass.toml"
APPLIED_NAME = "bluegrass-applied.txt"
ERROR_NAME = "bluegrass-error.txt"
ADMIN_USER_FILE = "etc/bluegrass/admin-user"
APPLIANCE = "/opt/bluegrass/bin/bluegrass-appliance"
APPLIANCE_STATE = "var/lib/bluegrass-appliance"
APPLIANCE_CONFIG = "bluegrass-appliance.toml"
WIFI_CONNECTION = "etc/NetworkManager/system-connections/bluegrass-wifi.nmconnection"
WIFI_COUNTRY = "etc/modprobe.d/bluegrass-wifi-country.conf"

HOSTNAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
COUNTRY_RE = re.compile(r"^[A-Z]{2}$")
# https only: the appliance sends its password nowhere else (it refuses http in [cloud] url).
URL_RE = re.compile(r"^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?/?$")
TIMEZONE_RE = re.compile(r"^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+)*$")
KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
KNOWN = {
    "": {"hostname", "timezone", "wifi", "enroll", "ssh"},
    "wifi": {"ssid", "password", "country", "hidden"},
    "enroll": {"code", "cloud_url"},
    "ssh": {"authorized_keys"},
}


class SettingsError(ValueError):
    """The file cannot be applied; the message says which key and why."""


@dataclass
class Wifi:
    ssid: str
    password: str | None
    country: str
    hidden: bool = False


@dataclass
class Settings:
    hostname: str | None = None
    timezone: str | None = None
    wifi: Wifi | None = None
    enroll_code: str | None = None
    cloud_url: str | None = None
    authorized_keys: list[str] = field(default_factory=list)

    def empty(self) -> bool:
        return (
            self.hostname is None
            and self.timezone is None
            and self.wifi is None
            and self.enroll_code is None
            and self.cloud_url is None
            and not self.authorized_keys
        )


def _string(table: dict[str, object], key: str, where: str) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise SettingsError(f"{where}{key}: expected a string in quotes, got {value!r}")
    return value


def parse(text: str) -> Settings:
    """Check the file's contents and return what to apply (pure: no side effects)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"not valid TOML: {exc}") from None
    for key in data:
        if key not in KNOWN[""]:
            raise SettingsError(f"unknown setting {key!r}; known: {', '.join(sorted(KNOWN['']))}")
    for section in ("wifi", "enroll", "ssh"):
        table = data.get(section, {})
        if not isinstance(table, dict):
            raise SettingsError(f"{section}: expected a section [{section}]")
        for key in table:
            if key not in KNOWN[section]:
                raise SettingsError(
                    f"[{section}] {key}: unknown setting; known: "
                    f"{', '.join(sorted(KNOWN[section]))}"
                )
    settings = Settings()

    hostname = _string(data, "hostname", "")
    if hostname is not None:
        if not HOSTNAME_RE.match(hostname):
            raise SettingsError(
                f"hostname: {hostname!r} is not a valid name: 1-63 lower-case letters, digits "
                "and '-', not starting or ending with '-'"
            )
        settings.hostname = hostname

    timezone = _string(data, "timezone", "")
    if timezone is not None:
        if not TIMEZONE_RE.match(timezone) or ".." in timezone:
            raise SettingsError(f"timezone: {timezone!r} is not a time zone name like Europe/Paris")
        settings.timezone = timezone

    wifi = data.get("wifi")
    if wifi:
        assert isinstance(wifi, dict)
        ssid = _string(wifi, "ssid", "[wifi] ")
        if not ssid:
            raise SettingsError("[wifi] ssid: the network's name is missing")
        if len(ssid.encode()) > 32 or any(ord(c) < 32 or ord(c) == 127 for c in ssid):
            raise SettingsError("[wifi] ssid: at most 32 bytes, no control characters")
        password = _string(wifi, "password", "[wifi] ")
        if password is not None and password != "":
            hex64 = len(password) == 64 and all(c in "0123456789abcdefABCDEF" for c in password)
            printable = all(32 <= ord(c) < 127 for c in password)
            if not hex64 and not (8 <= len(password) <= 63 and printable):
                raise SettingsError(
                    "[wifi] password: a WPA password is 8 to 63 plain ASCII characters"
                )
        else:
            password = None
        country = _string(wifi, "country", "[wifi] ")
        if country is None:
            raise SettingsError(
                "[wifi] country: missing; the two-letter code of the country the Pi is in "
                "(GB, US, DE, ...), which decides the Wi-Fi channels it may use"
            )
        if not COUNTRY_RE.match(country):
            raise SettingsError(f"[wifi] country: {country!r} is not a two-letter code like GB")
        hidden = wifi.get("hidden", False)
        if not isinstance(hidden, bool):
            raise SettingsError("[wifi] hidden: expected true or false")
        settings.wifi = Wifi(ssid=ssid, password=password, country=country, hidden=hidden)

    enroll = data.get("enroll", {})
    assert isinstance(enroll, dict)
    code = _string(enroll, "code", "[enroll] ")
    if code:
        code = code.strip()
        if not code.startswith("bg1-") or any(c.isspace() for c in code):
            raise SettingsError(
                "[enroll] code: expected the one-line code starting with bg1- that "
                "`bluegrass-cloud user add` printed"
            )
        settings.enroll_code = code
    cloud_url = _string(enroll, "cloud_url", "[enroll] ")
    if cloud_url:
        if not URL_RE.match(cloud_url):
            raise SettingsError(
                f"[enroll] cloud_url: {cloud_url!r} is not an address like "
                "https://backup.example.org"
            )
        settings.cloud_url = cloud_url.rstrip("/")

    ssh = data.get("ssh", {})
    assert isinstance(ssh, dict)
    keys = ssh.get("authorized_keys", [])
    if isinstance(keys, str):
        keys = [keys]
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise SettingsError('[ssh] authorized_keys: expected a list like ["ssh-ed25519 AAAA..."]')
    for key in keys:
        settings.authorized_keys.append(check_public_key(key))
    return settings


def check_public_key(line: str) -> str:
    """One public key line, `TYPE BASE64 [COMMENT]`, without options; returned stripped."""
    line = line.strip()
    parts = line.split(None, 2)
    if len(parts) < 2 or parts[0] not in KEY_TYPES:
        raise SettingsError(
            f"[ssh] authorized_keys: {line[:40]!r}... is not a public key line "
            "(ssh-ed25519 AAAA... comment); paste the contents of your .pub file"
        )
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except ValueError:
        damaged = f"[ssh] authorized_keys: the key {parts[1][:20]}... is damaged"
        raise SettingsError(damaged) from None
    # The blob starts with its own type name, length-prefixed.
    name = parts[0].encode()
    if blob[4 : 4 + len(name)] != name:
        raise SettingsError(f"[ssh] authorized_keys: the key {parts[1][:20]}... is damaged")
    if "\n" in line or "\r" in line:
        raise SettingsError("[ssh] authorized_keys: one key per list entry")
    return line


def wifi_keyfile(wifi: Wifi, connection_uuid: str) -> str:
    """A NetworkManager keyfile for the network (GKeyFile syntax, values escaped)."""

    def esc(value: str) -> str:
        out = value.replace("\\", "\\\\").replace(";", "\\;")
        if out.startswith(" "):
            out = "\\s" + out[1:]
        return out

    lines = [
        "[connection]",
        "id=bluegrass-wifi",
        f"uuid={connection_uuid}",
        "type=wifi",
        "autoconnect=true",
        "",
        "[wifi]",
        "mode=infrastructure",
        f"ssid={esc(wifi.ssid)}",
        f"hidden={'true' if wifi.hidden else 'false'}",
        "",
    ]
    if wifi.password is not None:
        lines += ["[wifi-security]", "key-mgmt=wpa-psk", f"psk={esc(wifi.password)}", ""]
    lines += ["[ipv4]", "method=auto", "", "[ipv6]", "method=auto", ""]
    return "\n".join(lines)


def hosts_with_name(text: str, hostname: str) -> str:
    """/etc/hosts with its 127.0.1.1 line naming `hostname` (added when missing)."""
    lines = text.splitlines()
    entry = f"127.0.1.1\t{hostname}"
    for i, line in enumerate(lines):
        if line.split()[:1] == ["127.0.1.1"]:
            lines[i] = entry
            break
    else:
        lines.append(entry)
    return "\n".join(lines) + "\n"


Run = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def run_command(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=False)


@dataclass
class Applier:
    """Applies settings to a root file system (/ on the Pi; a folder in tests)."""

    root: Path
    live: bool  # the running system: also set the host name, start SSH, ...
    run: Run = run_command
    appliance: str = APPLIANCE
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def path(self, relative: str) -> Path:
        return self.root / relative

    def write(self, relative: str, text: str, mode: int = 0o644) -> None:
        target = self.path(relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.new")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        tmp.chmod(mode)
        tmp.replace(target)

    def command(self, args: Sequence[str], what: str) -> bool:
        done = self.run(args)
        if done.returncode != 0:
            reason = (done.stderr or done.stdout or "").strip().splitlines()
            self.problems.append(f"{what}: {reason[-1] if reason else f'exit {done.returncode}'}")
            return False
        return True

    def apply(self, settings: Settings) -> None:
        if settings.hostname:
            self.hostname(settings.hostname)
        if settings.timezone:
            self.timezone(settings.timezone)
        if settings.wifi:
            self.wifi(settings.wifi)
        if settings.authorized_keys:
            self.ssh(settings.authorized_keys)
        if settings.cloud_url:
            self.cloud_url(settings.cloud_url)
        if settings.enroll_code:
            self.enroll(settings.enroll_code)

    def hostname(self, name: str) -> None:
        self.write("etc/hostname", name + "\n")
        hosts = self.path("etc/hosts")
        self.write("etc/hosts", hosts_with_name(hosts.read_text() if hosts.exists() else "", name))
        if self.live:
            socket.sethostname(name)
        self.notes.append(f'hostname = "{name}" (the panel: http://{name}.local)')

    def timezone(self, name: str) -> None:
        zone = Path("/usr/share/zoneinfo") / name
        if not (self.root / zone.relative_to("/")).is_file():
            self.problems.append(f"timezone: {name} is not a known time zone; left unchanged")
            return
        localtime = self.path("etc/localtime")
        if localtime.is_symlink() or localtime.exists():
            localtime.unlink()
        localtime.symlink_to(zone)
        self.write("etc/timezone", name + "\n")
        self.notes.append(f'timezone = "{name}"')

    def wifi(self, wifi: Wifi) -> None:
        self.write(WIFI_CONNECTION, wifi_keyfile(wifi, str(uuid.uuid4())), mode=0o600)
        self.write(WIFI_COUNTRY, f"options cfg80211 ieee80211_regdom={wifi.country}\n")
        if self.live:
            if shutil.which("raspi-config"):
                # Raspberry Pi OS keeps Wi-Fi blocked until its own tool has set the country.
                self.command(
                    ["raspi-config", "nonint", "do_wifi_country", wifi.country], "Wi-Fi country"
                )
            if shutil.which("iw"):
                self.command(["iw", "reg", "set", wifi.country], "Wi-Fi country")
            if shutil.which("rfkill"):
                self.command(["rfkill", "unblock", "wifi"], "unblocking Wi-Fi")
        security = "open network" if wifi.password is None else "password removed from the card"
        self.notes.append(f'[wifi] ssid = "{wifi.ssid}", country = "{wifi.country}" ({security})')

    def admin(self) -> pwd.struct_passwd | None:
        name_file = self.path(ADMIN_USER_FILE)
        if not name_file.exists():
            self.problems.append(f"ssh: /{ADMIN_USER_FILE} is missing; no account to log in to")
            return None
        name = name_file.read_text().strip()
        for line in self.path("etc/passwd").read_text().splitlines():
            fields = line.split(":")
            if len(fields) == 7 and fields[0] == name:
                return pwd.struct_passwd(
                    (fields[0], fields[1], int(fields[2]), int(fields[3]), *fields[4:])
                )
        self.problems.append(f"ssh: the admin account {name} does not exist")
        return None

    def ssh(self, keys: list[str]) -> None:
        account = self.admin()
        if account is None:
            return
        home = self.root / account.pw_dir.lstrip("/")
        ssh_dir = home / ".ssh"
        ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        keys_file = ssh_dir / "authorized_keys"
        self.write(str(keys_file.relative_to(self.root)), "\n".join(keys) + "\n", 0o600)
        for path in (ssh_dir, ssh_dir / "authorized_keys"):
            os.chown(path, account.pw_uid, account.pw_gid)
        # Host keys are made here, on the Pi, never shipped in the image.
        if not self.command(["ssh-keygen", "-A", "-f", str(self.root)], "SSH host keys"):
            return
        enable = ["systemctl", "enable", "ssh.service"]
        if not self.live:
            enable.insert(1, f"--root={self.root}")
        if not self.command(enable, "enabling SSH"):
            return
        if self.live and Path("/run/systemd/system").is_dir():
            # --no-block: this service is ordered before ssh.service. (Not in a chroot.)
            self.command(["systemctl", "start", "--no-block", "ssh.service"], "starting SSH")
        self.notes.append(f"[ssh] {len(keys)} key(s) for {account.pw_name}; SSH enabled, keys only")

    def cloud_url(self, url: str) -> None:
        """`[cloud] url` in the appliance's settings (the image ships them with [panel])."""
        state = self.path(APPLIANCE_STATE)
        config = state / APPLIANCE_CONFIG
        text = config.read_text() if config.exists() else ""
        if any(line.strip() == "[cloud]" for line in text.splitlines()):
            self.problems.append(
                f"[enroll] cloud_url: /{APPLIANCE_STATE}/{APPLIANCE_CONFIG} has a [cloud] "
                f'section already; set url = "{url}" in it by hand'
            )
            return
        state.mkdir(mode=0o700, parents=True, exist_ok=True)
        if text and not text.endswith("\n"):
            text += "\n"
        text += f'\n[cloud]\nurl = "{url}"\n'
        self.write(f"{APPLIANCE_STATE}/{APPLIANCE_CONFIG}", text.lstrip("\n"))
        self.notes.append(f'[enroll] cloud_url = "{url}"')

    def enroll(self, code: str) -> None:
        env_args = ["env", f"BLUEGRASS_APPLIANCE_STATE={self.path(APPLIANCE_STATE)}"]
        done = self.run([*env_args, self.appliance, "enroll", code])
        if done.returncode != 0:
            reason = (done.stderr or done.stdout or "").strip().splitlines()
            self.problems.append(
                "[enroll] the code was not accepted ("
                + (reason[-1] if reason else f"exit {done.returncode}")
                + "); it has been erased from the card: enroll from the panel instead"
            )
            return
        self.notes.append("[enroll] " + (done.stdout.strip().splitlines() or ["enrolled"])[-1])


def erase(path: Path) -> None:
    """Overwrite a file with zeros, flush, and remove it (best effort on flash media)."""
    size = path.stat().st_size
    with path.open("r+b") as out:
        out.write(b"\0" * size)
        out.flush()
        os.fsync(out.fileno())
    path.unlink()


def summary(notes: list[str], problems: list[str], when: datetime) -> str:
    lines = [
        f"# {CONFIG_NAME} was applied at {when.isoformat(timespec='seconds')} and removed.",
        "# The Wi-Fi password and the enrollment code are not kept on this card.",
        f"# To apply settings again: put a new {CONFIG_NAME} here, then on the Pi run",
        "#   sudo systemctl enable bluegrass-firstboot.service && sudo reboot",
        "",
    ]
    lines += notes or ["(no settings)"]
    if problems:
        lines += ["", "Problems:"] + [f"- {p}" for p in problems]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None, run: Run = run_command) -> int:
    parser = argparse.ArgumentParser(prog="bluegrass-firstboot", description=__doc__.split("\n")[0])
    parser.add_argument("--boot", default="/boot/firmware", help="the boot partition's mount point")
    parser.add_argument("--root", default="/", help="the root file system to change (tests)")
    parser.add_argument("--appliance", default=APPLIANCE, help="the bluegrass-appliance command")
    args = parser.parse_args(argv)

    boot = Path(args.boot)
    root = Path(args.root)
    config = boot / CONFIG_NAME
    error_file = boot / ERROR_NAME
    if not config.exists():
        print(f"bluegrass-firstboot: no {config}; nothing to do")
        return 0
    try:
        settings = parse(config.read_text(encoding="utf-8-sig"))
    except (SettingsError, UnicodeDecodeError) as exc:
        message = f"{config}: {exc}"
        error_file.write_text(
            f"{message}\nNothing was applied. Correct {CONFIG_NAME} and restart the Pi.\n"
        )
        print(f"bluegrass-firstboot: error: {message}", file=sys.stderr)
        return 1
    if error_file.exists():
        error_file.unlink()
    if settings.empty():
        print(f"bluegrass-firstboot: {config} has no settings yet (all commented out); waiting")
        return 0

    applier = Applier(root=root, live=(root == Path("/")), run=run, appliance=args.appliance)
    applier.apply(settings)
    (boot / APPLIED_NAME).write_text(summary(applier.notes, applier.problems, datetime.now(UTC)))
    erase(config)
    os.sync()
    disable = ["systemctl", "disable", "bluegrass-firstboot.service"]
    if not applier.live:
        disable.insert(1, f"--root={root}")
    applier.command(disable, "disabling bluegrass-firstboot.service")
    for note in applier.notes:
        print(f"bluegrass-firstboot: {note}")
    for problem in applier.problems:
        print(f"bluegrass-firstboot: problem: {problem}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
