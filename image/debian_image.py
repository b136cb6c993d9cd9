"""`make image-debian`: the appliance image from Debian's archive alone.

    python image/debian_image.py [--out build/image-debian] [--suite trixie] [--compress xz]

1. A Debian root file system for arm64 with mmdebstrap (image/debian/mkrootfs.sh): the base
   that stands in for pi-gen's stage0-2 (image/debian/packages-base), Debian's kernel and the
   Raspberry Pi boot firmware (image/debian/packages-raspi), and the stage's own package
   lists. It is kept as a tarball keyed by its inputs, so changing only the stage does not
   rebuild it.
2. The Debian layer: what pi-gen's stages would have set (host name, fstab, the admin
   account, the boot firmware's cmdline.txt/config.txt, a first-boot root partition resize).
3. The SAME pi-gen stage as `make image` (image/stage-bluegrass), run through the shim
   (image/shim/pigen-shim.sh), with wheels for arm64 (image/wheels.py).
4. A bootable disk image: an MS-DOS partition table, a FAT32 boot partition RASPIFIRM (the
   firmware, the kernel, the initrd, cmdline.txt, config.txt, bluegrass.toml), an ext4 root
   partition RASPIROOT; made without loop devices (mkfs.ext4 -d, mtools), plus a .bmap, a
   .sha256 and, with --compress xz, an .img.xz.

Boots on a Raspberry Pi 3, 4 and Zero 2 W (Debian's arm64 kernel does not drive the Pi 5).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGE = ROOT / "image"
STAGE = IMAGE / "stage-bluegrass"
SHIM = IMAGE / "shim" / "pigen-shim.sh"
MKROOTFS = IMAGE / "debian" / "mkrootfs.sh"
DEBIAN_FILES = IMAGE / "debian" / "files"
CACHE = ROOT / "build" / "image-cache"

MIB = 1024 * 1024
SECTOR = 512
BOOT_START_MIB = 4
BOOT_SIZE_MIB = 512
BOOT_LABEL = "RASPIFIRM"
ROOT_LABEL = "RASPIROOT"
ADMIN = "admin"
HOSTNAME = "bluegrass"


def log(message: str) -> None:
    print(f"image-debian: {message}", file=sys.stderr, flush=True)


def run(args: Sequence[str | Path], **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(a) for a in args], check=True, **kwargs)  # type: ignore[call-overload]


def read_list(path: Path) -> list[str]:
    """A package list: one name a line, # comments."""
    names: list[str] = []
    for line in path.read_text().splitlines():
        names += line.split("#", 1)[0].split()
    return names


def stage_packages(stage: Path = STAGE) -> list[str]:
    done = run([SHIM, "packages", "--stage", stage], capture_output=True)
    return done.stdout.decode().split()


def base_rootfs(
    arch: str,
    suite: str,
    packages: list[str],
    dest: Path,
    *,
    cache: Path = CACHE,
    security: bool = False,
    keep_tarball: bool = True,
) -> Path:
    """A fresh root file system at `dest` (its tarball cached under `cache` by its inputs)."""
    key_source = json.dumps(
        [arch, suite, sorted(set(packages)), security, MKROOTFS.read_text()]
    ).encode()
    key = hashlib.sha256(key_source).hexdigest()[:16]
    tarball = cache / f"rootfs-{suite}-{arch}-{key}.tar"
    if dest.exists():
        shutil.rmtree(dest)
    if keep_tarball and tarball.exists():
        log(f"base root file system from {tarball.name}")
        dest.mkdir(parents=True)
        run(["tar", "--numeric-owner", "--xattrs", "-xpf", tarball, "-C", dest])
        return dest
    args: list[str | Path] = [MKROOTFS, "--arch", arch, "--suite", suite, "--out", dest]
    args += ["--cache", cache / f"debs-{arch}-{suite}"]
    if security:
        args.append("--security")
    run([*args, *sorted(set(packages))])
    if keep_tarball:
        for old in cache.glob(f"rootfs-{suite}-{arch}-*.tar"):
            old.unlink()
        partial = tarball.with_suffix(".partial")
        run(["tar", "--numeric-owner", "--xattrs", "-cpf", partial, "-C", dest, "."])
        partial.rename(tarball)
    return dest


def stage_copy(work: Path, arch: str, pythons: list[str]) -> Path:
    """The stage, copied under `work` with the wheelhouse for `arch` in its files/wheels."""
    sys.path.insert(0, str(IMAGE))
    import wheels  # image/wheels.py

    house = CACHE / f"wheels-{arch}"
    wheels.build(arch, pythons, house)
    copy = work / "stage-bluegrass"
    if copy.exists():
        shutil.rmtree(copy)
    shutil.copytree(STAGE, copy, symlinks=True)
    target = copy / "01-bluegrass" / "files" / "wheels"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir()
    for wheel in house.glob("*.whl"):
        shutil.copy2(wheel, target)
    return copy


def apply_stage(rootfs: Path, stage: Path, first_user: str = ADMIN) -> None:
    run([SHIM, "run", "--rootfs", rootfs, "--stage", stage, "--first-user", first_user])


def chroot(rootfs: Path, *args: str) -> None:
    """Run a command in the root file system (with /proc; mounts end with the command)."""
    script = 'mount -t proc proc "$1/proc" && root="$1" && shift && exec chroot "$root" "$@"'
    run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", rootfs, *args])


def install_file(source: Path, target: Path, mode: int = 0o644) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    target.chmod(mode)


def debian_layer(rootfs: Path, hostname: str = HOSTNAME, admin: str = ADMIN) -> None:
    """What pi-gen's stage0-2 would have done, for Debian's own Raspberry Pi packages."""
    etc = rootfs / "etc"
    (etc / "hostname").write_text(hostname + "\n")
    (etc / "hosts").write_text(
        f"127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n"
        "::1\t\tlocalhost ip6-localhost ip6-loopback\n"
        "ff02::1\t\tip6-allnodes\nff02::2\t\tip6-allrouters\n"
    )
    (etc / "fstab").write_text(
        "# <file system>   <mount point>   <type> <options>  <dump> <pass>\n"
        f"LABEL={ROOT_LABEL}  /               ext4   rw,noatime,errors=remount-ro  0  1\n"
        # umask=0077: bluegrass.toml may hold a Wi-Fi password until the first boot.
        f"LABEL={BOOT_LABEL}  /boot/firmware  vfat   rw,noatime,umask=0077  0  2\n"
    )
    # raspi-firmware writes cmdline.txt and config.txt from these (never edit those directly).
    (etc / "default" / "raspi-firmware").write_text(
        "# Bluegrass (image/debian_image.py): root by label, serial console on the GPIO pins.\n"
        f"ROOTPART=LABEL={ROOT_LABEL}\n"
        'CONSOLES="ttyS1,115200 tty0"\n'
    )
    install_file(
        DEBIAN_FILES / "bluegrass-growroot",
        rootfs / "usr" / "lib" / "bluegrass" / "bluegrass-growroot",
        0o755,
    )
    install_file(
        DEBIAN_FILES / "bluegrass-growroot.service",
        etc / "systemd" / "system" / "bluegrass-growroot.service",
    )
    # pi-gen's stage1 makes the first user; the stage takes it from here (no password).
    chroot(rootfs, "sh", "-c", f"id -u {admin} >/dev/null 2>&1 || useradd -m -s /bin/bash {admin}")
    chroot(rootfs, "systemctl", "enable", "bluegrass-growroot.service", "systemd-timesyncd.service")
    # Regenerate cmdline.txt/config.txt and copy the kernel, initrd and DTBs for the label.
    kernels = sorted((rootfs / "lib" / "modules").iterdir())
    if not kernels:
        raise RuntimeError("no kernel in the root file system (linux-image-arm64 missing?)")
    hook = "/etc/kernel/postinst.d/z50-raspi-firmware"
    # The hook acts only when told it runs for a package's configure step.
    chroot(rootfs, "env", "DEB_MAINT_PARAMS=configure", hook, kernels[-1].name)
    cmdline = (rootfs / "boot" / "firmware" / "cmdline.txt").read_text()
    if f"root=LABEL={ROOT_LABEL}" not in cmdline.split():
        raise RuntimeError(f"raspi-firmware did not write root=LABEL={ROOT_LABEL}: {cmdline}")


@dataclass
class Layout:
    boot_start: int  # bytes
    boot_size: int
    root_start: int
    root_size: int

    @property
    def total(self) -> int:
        return self.root_start + self.root_size


def du_bytes(path: Path, exclude: Path | None = None) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        here = Path(dirpath)
        if exclude is not None and here == exclude:
            dirnames.clear()
            continue
        for name in filenames:
            st = (here / name).lstat()
            total += st.st_blocks * 512
        total += 4096 * len(dirnames)
    return total


def plan_layout(root_bytes: int) -> Layout:
    """Partition offsets and sizes (4 MiB aligned); root gets 30% + 256 MiB of headroom."""
    align = 4 * MIB
    root_size = int(root_bytes * 1.3) + 256 * MIB
    root_size = (root_size + align - 1) // align * align
    boot_start = BOOT_START_MIB * MIB
    boot_size = BOOT_SIZE_MIB * MIB
    return Layout(boot_start, boot_size, boot_start + boot_size, root_size)


def sfdisk_script(layout: Layout) -> str:
    return (
        "label: dos\nunit: sectors\n\n"
        f"start={layout.boot_start // SECTOR}, size={layout.boot_size // SECTOR}, "
        "type=c, bootable\n"
        f"start={layout.root_start // SECTOR}, size={layout.root_size // SECTOR}, type=83\n"
    )


def assemble(rootfs: Path, image: Path, work: Path) -> Layout:
    """rootfs (with its /boot/firmware) -> a partitioned disk image, without loop devices."""
    firmware = rootfs / "boot" / "firmware"
    layout = plan_layout(du_bytes(rootfs, exclude=firmware))
    boot_fs = work / "boot.vfat"
    root_fs = work / "root.ext4"
    for path in (boot_fs, root_fs, image):
        path.unlink(missing_ok=True)

    log(f"boot partition: FAT32 {BOOT_LABEL}, {layout.boot_size // MIB} MiB")
    with boot_fs.open("wb") as out:
        out.truncate(layout.boot_size)
    run(["mkfs.vfat", "-F", "32", "-n", BOOT_LABEL, boot_fs], stdout=subprocess.DEVNULL)
    entries = sorted(firmware.iterdir())
    run(["mcopy", "-s", "-p", "-m", "-i", boot_fs, *entries, "::/"])

    log(f"root partition: ext4 {ROOT_LABEL}, {layout.root_size // MIB} MiB")
    # The root file system's /boot/firmware is only a mount point: move the files out of the
    # way while mkfs.ext4 copies the tree in.
    aside = work / "firmware-aside"
    if aside.exists():
        shutil.rmtree(aside)
    firmware.rename(aside)
    firmware.mkdir()
    try:
        run(
            [
                "mkfs.ext4",
                "-q",
                "-L",
                ROOT_LABEL,
                "-O",
                "^huge_file",
                "-E",
                "root_owner=0:0",
                "-d",
                rootfs,
                root_fs,
                f"{layout.root_size // 1024}k",
            ]
        )
    finally:
        firmware.rmdir()
        aside.rename(firmware)

    log(f"disk image {image.name}: {layout.total // MIB} MiB")
    with image.open("wb") as out:
        out.truncate(layout.total)
    run(["sfdisk", "--quiet", image], input=sfdisk_script(layout).encode())
    for part, offset in ((boot_fs, layout.boot_start), (root_fs, layout.root_start)):
        run(
            [
                "dd",
                f"if={part}",
                f"of={image}",
                "bs=4M",
                f"seek={offset}",
                "oflag=seek_bytes",
                "conv=notrunc,sparse",
                "status=none",
            ]
        )
        part.unlink()
    return layout


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(4 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


def finish(image: Path, compress: str) -> list[Path]:
    """.bmap, .sha256 and the optional compressed copy next to the image."""
    made = [image]
    if shutil.which("bmaptool"):
        bmap = image.with_suffix(".bmap")
        run(["bmaptool", "create", "-o", bmap, image])
        made.append(bmap)
    else:
        log("bmaptool not installed (apt-get install bmap-tools): no .bmap")
    if compress == "xz":
        xz = image.with_name(image.name + ".xz")
        xz.unlink(missing_ok=True)
        run(["xz", "-T0", "-k", "-6", image])
        made.append(xz)
    sums = image.with_name(image.name + ".sha256")
    sums.write_text("".join(f"{sha256(p)}  {p.name}\n" for p in made if p.suffix != ".bmap"))
    made.append(sums)
    return made


def build(out: Path, suite: str, compress: str, pythons: list[str]) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    packages = read_list(IMAGE / "debian" / "packages-base")
    packages += read_list(IMAGE / "debian" / "packages-raspi")
    packages += stage_packages()
    rootfs = out / "rootfs"
    log(f"base root file system: Debian {suite} arm64")
    base_rootfs("arm64", suite, packages, rootfs, security=True)
    log("Debian layer (what pi-gen's stage0-2 would do)")
    debian_layer(rootfs)
    log("stage-bluegrass through the pi-gen shim")
    stage = stage_copy(out, "arm64", pythons)
    apply_stage(rootfs, stage)
    image = out / f"bluegrass-debian-{suite}-arm64.img"
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        layout = assemble(rootfs, image, Path(tmp))
    (out / "layout.json").write_text(json.dumps(layout.__dict__, indent=2) + "\n")
    for made in finish(image, compress):
        log(f"made {made}")
    return image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "image-debian")
    parser.add_argument("--suite", default="trixie")
    parser.add_argument("--compress", choices=["none", "xz"], default="none")
    parser.add_argument(
        "--python", action="append", dest="pythons", help="the image's Python (3.13 for trixie)"
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("image-debian: must run as root (mmdebstrap, chroot)", file=sys.stderr)
        return 1
    missing = [
        tool
        for tool in ("mmdebstrap", "mkfs.vfat", "mcopy", "mkfs.ext4", "sfdisk", "unshare")
        if shutil.which(tool) is None
    ]
    if missing:
        print(
            f"image-debian: missing {', '.join(missing)}: apt-get install mmdebstrap "
            "qemu-user-static binfmt-support arch-test dosfstools mtools e2fsprogs fdisk "
            "bmap-tools",
            file=sys.stderr,
        )
        return 1
    pythons = args.pythons or (["3.11"] if args.suite == "bookworm" else ["3.13"])
    build(args.out.resolve(), args.suite, args.compress, pythons)
    return 0


if __name__ == "__main__":
    sys.exit(main())
