"""`make image-test`: boot the Debian-built arm64 image under qemu-system-aarch64 and check it.

    python image/boottest.py [--image build/image-debian/bluegrass-debian-trixie-arm64.img]

QEMU's raspi3b machine cannot boot it usefully (no USB host controller or network that
Debian's kernel drives there, and no SD card boot through the firmware), so the image's own
kernel and initrd, read from its FAT boot partition, are started directly (-kernel/-initrd) on
the `virt` machine, with the whole image as the disk: the root file system is found by its
label (RASPIROOT) and /boot/firmware is mounted from the image's FAT partition, as on a Pi.
What a Pi adds (its GPU firmware reading config.txt and cmdline.txt) is not exercised.

On a copy of the image, 1 GiB larger (the root partition must grow into it), with a
bluegrass.toml on the boot partition (an SSH key and an enrollment code from a local
`bluegrass-cloud`), it checks, recording each result in build/image-test/result.json:

- the panel answers on a forwarded port (guest port 80);
- SSH works with the key (and only keys), the first-boot file was applied once and erased;
- the services are active, avahi announces bluegrass.local, no account has a password;
- the root partition grew;
- a USB disk hot-plugged through the QEMU monitor (QMP `device_add usb-storage`) holding a
  prepared Bluegrass drive is found and mounted by the appliance at /media/bluegrass, and
  unplugging it is noticed;
- the VM powers off cleanly.

The guest's network is `restrict=on`: it reaches nothing but the forwarded ports.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_IMAGE = ROOT / "build" / "image-debian" / "bluegrass-debian-trixie-arm64.img"
VENV_BIN = ROOT / ".venv" / "bin"
GROW = 1024 * 1024 * 1024


def log(message: str) -> None:
    print(f"image-test [{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=True, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]


def poll(what: str, check: Callable[[], object], timeout: float, every: float = 2.0) -> object:
    """Call `check` until it returns something truthy; the interval is only the poll rate."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            last_error = str(exc)
        time.sleep(every)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s {last_error}")


@dataclass
class Partition:
    start: int  # bytes
    size: int


def partitions(image: Path) -> list[Partition]:
    table = json.loads(run(["sfdisk", "--json", str(image)]).stdout)["partitiontable"]
    sector = int(table.get("sectorsize", 512))
    return [Partition(p["start"] * sector, p["size"] * sector) for p in table["partitions"]]


class Monitor:
    """QEMU's machine protocol (QMP) on a unix socket: one JSON command, one JSON answer."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(30)
        self.sock.connect(str(path))
        self.stream = self.sock.makefile("rwb")
        self._answer()  # the greeting
        self.command("qmp_capabilities")

    def _answer(self) -> dict[str, object]:
        while True:
            line = self.stream.readline()
            if not line:
                raise OSError("the QEMU monitor closed")
            message = json.loads(line)
            if "event" not in message:  # events (DEVICE_DELETED, ...) come in between
                return message

    def command(self, name: str, **arguments: object) -> object:
        request: dict[str, object] = {"execute": name}
        if arguments:
            request["arguments"] = arguments
        self.stream.write(json.dumps(request).encode() + b"\n")
        self.stream.flush()
        answer = self._answer()
        if "error" in answer:
            raise OSError(f"QEMU refused {name}: {answer['error']}")
        return answer.get("return")

    def close(self) -> None:
        self.stream.close()
        self.sock.close()


@dataclass
class Results:
    checks: list[dict[str, object]] = field(default_factory=list)

    def record(self, name: str, ok: bool, detail: str = "") -> None:
        self.checks.append({"check": name, "ok": ok, "detail": detail})
        log(f"{'PASS' if ok else 'FAIL'} {name}: {detail}")

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c["ok"] for c in self.checks)


class Guest:
    def __init__(self, key: Path, port: int) -> None:
        self.key = key
        self.port = port

    def ssh(self, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        args = [
            "ssh",
            *("-i", str(self.key), "-p", str(self.port)),
            *("-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"),
            *("-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10"),
            *("-o", "LogLevel=ERROR"),
            "admin@127.0.0.1",
            command,
        ]
        return subprocess.run(args, capture_output=True, text=True, timeout=120, check=check)


def prepare(image: Path, work: Path) -> dict[str, Path | str | int]:
    """The disk copy with bluegrass.toml, the kernel and initrd, the key, the USB drive."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    disk = work / "disk.img"
    run(["cp", "--sparse=always", str(image), str(disk)])
    original_root = partitions(disk)[1].size
    with disk.open("r+b") as f:
        f.truncate(disk.stat().st_size + GROW)
    boot = partitions(disk)[0]
    fat = f"{disk}@@{boot.start}"

    key = work / "id_ed25519"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "image-test", "-f", str(key)])
    cloud_data = work / "cloud"
    cloud = str(VENV_BIN / "bluegrass-cloud")
    run([cloud, "--data", str(cloud_data), "init"])
    code = json.loads(
        run([cloud, "--data", str(cloud_data), "user", "add", "pi-test", "--json"]).stdout
    )["enrollment_code"]
    settings = work / "bluegrass.toml"
    settings.write_text(
        "# written by image/boottest.py\n"
        'hostname = "bluegrass"\n'
        f'[enroll]\ncode = "{code}"\n'
        f'[ssh]\nauthorized_keys = ["{key.with_suffix(".pub").read_text().strip()}"]\n'
    )
    run(["mcopy", "-o", "-i", fat, str(settings), "::bluegrass.toml"])

    listing = run(["mdir", "-b", "-i", fat, "::"]).stdout.split()
    names = [Path(p).name for p in listing]
    kernel = max(n for n in names if n.startswith("vmlinuz-"))
    initrd = max(n for n in names if n.startswith("initrd.img-"))
    for name in (kernel, initrd):
        run(["mcopy", "-o", "-i", fat, f"::{name}", str(work / name)])

    usb = work / "usb.img"
    with usb.open("wb") as f:
        f.truncate(256 * 1024 * 1024)
    loop = run(["losetup", "--find", "--show", str(usb)]).stdout.strip()
    try:
        state = work / "host-appliance"
        prepared = run(
            [
                *(str(VENV_BIN / "bluegrass-appliance"), "--state", str(state)),
                *("drive", "prepare", loop, "--yes", "--json"),
            ]
        )
        drive_id = json.loads(prepared.stdout)["id"]
    finally:
        subprocess.run(["losetup", "-d", loop], check=False)
    return {
        "disk": disk,
        "kernel": work / kernel,
        "initrd": work / initrd,
        "key": key,
        "usb": usb,
        "drive_id": drive_id,
        "original_root": original_root,
    }


def qemu_command(prep: dict[str, Path | str | int], work: Path, http: int, ssh: int) -> list[str]:
    forwards = f"hostfwd=tcp:127.0.0.1:{http}-:80,hostfwd=tcp:127.0.0.1:{ssh}-:22"
    return [
        "qemu-system-aarch64",
        *("-M", "virt", "-cpu", "cortex-a72", "-smp", "2", "-m", "1536"),
        *("-display", "none", "-no-reboot"),
        *("-kernel", str(prep["kernel"]), "-initrd", str(prep["initrd"])),
        "-append",
        "root=LABEL=RASPIROOT rw rootwait console=ttyAMA0 net.ifnames=0",
        *("-drive", f"if=none,id=root,file={prep['disk']},format=raw"),
        *("-device", "virtio-blk-pci,drive=root"),
        *("-netdev", f"user,id=n0,restrict=on,{forwards}"),
        *("-device", "virtio-net-pci,netdev=n0,romfile="),
        *("-device", "qemu-xhci,id=xhci"),
        *("-serial", f"file:{work / 'console.log'}"),
        *("-qmp", f"unix:{work / 'monitor.sock'},server=on,wait=off"),
    ]


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (http://127.0.0.1 only)
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def checks(
    guest: Guest, monitor: Monitor, prep: dict[str, Path | str | int], http: int, results: Results
) -> None:
    status, body = http_get(f"http://127.0.0.1:{http}/")
    results.record(
        "panel answers on port 80", status == 200 and "Bluegrass" in body, f"HTTP {status}"
    )

    poll("SSH with the key", lambda: guest.ssh("true", check=False).returncode == 0, 300)
    results.record("SSH login with the first-boot key", True, "admin@ with the key")
    sshd = guest.ssh("sudo -n sshd -T").stdout
    results.record(
        "SSH takes keys only",
        "passwordauthentication no" in sshd and "permitrootlogin no" in sshd,
        "sshd -T: passwordauthentication no, permitrootlogin no",
    )
    listing = guest.ssh("sudo -n ls /boot/firmware").stdout.split()
    applied = guest.ssh("sudo -n cat /boot/firmware/bluegrass-applied.txt").stdout
    enabled = guest.ssh("systemctl is-enabled bluegrass-firstboot.service", check=False).stdout
    results.record(
        "first-boot file applied once and erased",
        "bluegrass.toml" not in listing
        and "bluegrass-applied.txt" in listing
        and "bg1-" not in applied
        and "Enrolled as pi-test" in applied
        and enabled.strip() == "disabled",
        f"bluegrass-toml gone, bluegrass-firstboot {enabled.strip()}, applied.txt has no code",
    )
    units = "bluegrass-appliance.service avahi-daemon.service ssh.service"
    active = guest.ssh(f"systemctl is-active {units}", check=False).stdout.split()
    results.record("services active", active == ["active"] * 3, f"{units}: {' '.join(active)}")
    panel = json.loads(guest.ssh("sudo -n bluegrass-appliance status --json").stdout)["panel"]
    results.record(
        "the panel is the appliance's own, on port 80",
        bool(panel) and panel["state"] == "up" and panel["port"] == 80,
        f"bluegrass-appliance status: panel {panel}",
    )
    failed = guest.ssh("systemctl --failed --no-legend --plain", check=False).stdout.strip()
    results.record("no failed units", failed == "", failed or "none")
    avahi = guest.ssh("sudo -n journalctl -b -u avahi-daemon --no-pager", check=False).stdout
    results.record(
        "avahi announces bluegrass.local",
        "Host name is bluegrass.local" in avahi,
        "journal: Server startup complete. Host name is bluegrass.local",
    )
    hashes = guest.ssh("sudo -n awk -F: '$2 ~ /^\\$/ {print $1}' /etc/shadow").stdout.strip()
    results.record("no account has a password", hashes == "", hashes or "none")
    root_size = int(guest.ssh("lsblk -b -n -o SIZE /dev/vda2").stdout.split()[0])
    results.record(
        "root partition grew to the disk",
        root_size >= int(prep["original_root"]) + GROW - 16 * 1024 * 1024,
        f"{int(prep['original_root']) // 2**20} MiB -> {root_size // 2**20} MiB",
    )
    enrolled = guest.ssh(
        "sudo -n test -s /var/lib/bluegrass-appliance/enrollment.json", check=False
    )
    results.record("enrolled from the first-boot file", enrolled.returncode == 0, "enrollment.json")

    # The USB drive, plugged in while everything runs.
    monitor.command(
        "blockdev-add",
        driver="raw",
        **{"node-name": "usbdisk"},
        file={"driver": "file", "filename": str(prep["usb"])},
    )
    monitor.command(
        "device_add", driver="usb-storage", bus="xhci.0", drive="usbdisk", id="usbstick"
    )
    log("monitor: usb-storage device added on xhci.0")
    started = time.monotonic()

    def drive_ready() -> dict[str, object] | None:
        status = json.loads(guest.ssh("sudo -n bluegrass-appliance status --json").stdout)
        drive = status["drive"]
        return drive if drive.get("state") == "ready" else None

    try:
        drive = poll("the appliance mounting the USB drive", drive_ready, 240, every=3)
        mount = guest.ssh("findmnt -n -o SOURCE,TARGET,FSTYPE /media/bluegrass").stdout.split()
        assert isinstance(drive, dict)
        results.record(
            "hot-plugged USB drive detected and mounted by the appliance",
            mount[1:] == ["/media/bluegrass", "ext4"] and drive.get("id") == prep["drive_id"],
            f"{' '.join(mount)} after {time.monotonic() - started:.0f} s, id {drive.get('id')}",
        )
        link = guest.ssh("readlink -f /dev/bluegrass-drive", check=False).stdout.strip()
        results.record(
            "udev rule names the drive", link == mount[0], f"/dev/bluegrass-drive -> {link}"
        )
    except TimeoutError as exc:
        journal = guest.ssh(
            "sudo -n journalctl -b -u bluegrass-appliance --no-pager | tail -20", check=False
        )
        results.record(
            "hot-plugged USB drive detected and mounted by the appliance",
            False,
            f"{exc}; {journal.stdout}",
        )
        return

    monitor.command("device_del", id="usbstick")

    def drive_gone() -> str | None:
        status = json.loads(guest.ssh("sudo -n bluegrass-appliance status --json").stdout)
        state = str(status["drive"].get("state"))
        mounted = guest.ssh("findmnt -n /media/bluegrass", check=False).returncode == 0
        return state if state in ("missing", "absent") and not mounted else None

    try:
        state = poll("the appliance noticing the unplug", drive_gone, 120, every=3)
        results.record("unplugged drive noticed and unmounted", True, f"drive state {state}")
    except TimeoutError as exc:
        results.record("unplugged drive noticed and unmounted", False, str(exc))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "image-test")
    parser.add_argument("--boot-timeout", type=float, default=900)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("image-test: needs root (losetup for the test drive)", file=sys.stderr)
        return 1
    if not args.image.is_file():
        print(f"image-test: no image at {args.image}: run make image-debian first", file=sys.stderr)
        return 1
    for tool in ("qemu-system-aarch64", "mcopy", "mdir", "sfdisk", "ssh", "ssh-keygen", "losetup"):
        if shutil.which(tool) is None:
            print(
                f"image-test: {tool} is missing: apt-get install qemu-system-arm mtools fdisk "
                "openssh-client util-linux",
                file=sys.stderr,
            )
            return 1
    work = args.work.resolve()
    log(f"preparing a copy of {args.image.name} in {work}")
    prep = prepare(args.image.resolve(), work)
    http, ssh_port = free_port(), free_port()
    command = qemu_command(prep, work, http, ssh_port)
    (work / "qemu-command.txt").write_text(" ".join(command) + "\n")
    log("booting: " + " ".join(command))
    results = Results()
    started = time.monotonic()
    qemu = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    monitor: Monitor | None = None
    try:
        poll("the monitor socket", lambda: (work / "monitor.sock").exists(), 30, every=0.2)
        monitor = Monitor(work / "monitor.sock")

        def panel_up() -> bool:
            if qemu.poll() is not None:
                raise RuntimeError(f"qemu exited with {qemu.returncode}")
            return http_get(f"http://127.0.0.1:{http}/")[0] == 200

        poll("the panel on port 80", panel_up, args.boot_timeout, every=3)
        boot_seconds = time.monotonic() - started
        results.record(
            "booted to a working panel", True, f"{boot_seconds:.0f} s after qemu started"
        )
        guest = Guest(prep["key"], ssh_port)  # type: ignore[arg-type]
        checks(guest, monitor, prep, http, results)
        guest.ssh("sudo -n systemctl poweroff", check=False)
        try:
            qemu.wait(timeout=180)
            results.record("clean power-off", True, f"qemu exited {qemu.returncode}")
        except subprocess.TimeoutExpired:
            results.record("clean power-off", False, "still running after 180 s")
    except (TimeoutError, RuntimeError, OSError, subprocess.SubprocessError) as exc:
        results.record("boot", False, str(exc))
    finally:
        if monitor is not None:
            monitor.close()
        if qemu.poll() is None:
            qemu.kill()
            qemu.wait()
    summary = {
        "image": str(args.image),
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "seconds": round(time.monotonic() - started),
        "qemu": " ".join(command),
        "ok": results.ok,
        "checks": results.checks,
    }
    (work / "result.json").write_text(json.dumps(summary, indent=2) + "\n")
    log(f"{'ALL PASSED' if results.ok else 'FAILED'}; console log {work / 'console.log'}")
    return 0 if results.ok else 1


if __name__ == "__main__":
    sys.exit(main())
