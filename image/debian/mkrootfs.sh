#!/usr/bin/env bash
# Build a Debian root file system with mmdebstrap from Debian's archive alone.
#
#   image/debian/mkrootfs.sh --arch arm64 --suite trixie --out DIR [--cache DIR]
#                            [--variant minbase] [--security] PACKAGE...
#
# Downloaded .debs are kept in --cache (a folder under build/, git-ignored) and given back
# to the next run, so a rebuild downloads only what changed. Needs root, mmdebstrap, and for
# a foreign architecture qemu-user-static + binfmt-support with binfmt_misc mounted.
set -euo pipefail

arch=""
suite="trixie"
out=""
cache=""
variant="minbase"
security=0
mirror="${BLUEGRASS_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
packages=()

while [ $# -gt 0 ]; do
    case "$1" in
        --arch) arch="$2"; shift 2 ;;
        --suite) suite="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --cache) cache="$2"; shift 2 ;;
        --variant) variant="$2"; shift 2 ;;
        --security) security=1; shift ;;
        -*) echo "mkrootfs: unknown option $1" >&2; exit 2 ;;
        *) packages+=("$1"); shift ;;
    esac
done

if [ -z "$arch" ] || [ -z "$out" ]; then
    echo "mkrootfs: --arch and --out are required" >&2
    exit 2
fi
if [ "$(id -u)" != 0 ]; then
    echo "mkrootfs: must run as root (mmdebstrap --mode=root)" >&2
    exit 1
fi
command -v mmdebstrap >/dev/null || { echo "mkrootfs: mmdebstrap is not installed (apt-get install mmdebstrap)" >&2; exit 1; }

host_arch="$(dpkg --print-architecture)"
if [ "$arch" != "$host_arch" ]; then
    if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    fi
    if command -v update-binfmts >/dev/null; then
        update-binfmts --enable >/dev/null 2>&1 || true
    fi
    if ! arch-test "$arch" >/dev/null 2>&1; then
        echo "mkrootfs: this machine cannot run $arch binaries; install qemu-user-static binfmt-support arch-test" >&2
        exit 1
    fi
fi

components="main,non-free-firmware"
sources=("deb $mirror $suite ${components//,/ }")
if [ "$security" = 1 ]; then
    sources+=("deb $mirror $suite-updates ${components//,/ }")
    sources+=("deb ${mirror%/debian}/debian-security $suite-security ${components//,/ }")
fi

include=""
if [ "${#packages[@]}" -gt 0 ]; then
    include="$(IFS=,; echo "${packages[*]}")"
fi

args=(--mode=root --architectures="$arch" --variant="$variant" --components="$components"
      --aptopt='Acquire::Retries "3"'
      --dpkgopt='path-exclude=/usr/share/doc/*'
      --dpkgopt='path-include=/usr/share/doc/*/copyright'
      --dpkgopt='path-exclude=/usr/share/man/*'
      --dpkgopt='path-exclude=/usr/share/locale/*'
      --dpkgopt='path-include=/usr/share/locale/locale.alias')
if [ -n "$include" ]; then
    args+=(--include="$include")
fi
if [ -n "$cache" ]; then
    mkdir -p "$cache"
    cache="$(realpath "$cache")"
    # shellcheck disable=SC2016  # "$1" is for mmdebstrap's hook shell, not this one
    args+=(--skip=essential/unlink
           --setup-hook='mkdir -p "$1"/var/cache/apt/archives/'
           --setup-hook="sync-in $cache /var/cache/apt/archives/"
           --customize-hook="sync-out /var/cache/apt/archives $cache")
fi

rm -rf "$out"
mkdir -p "$(dirname "$out")"
echo "mkrootfs: $suite $arch ($variant) into $out" >&2
mmdebstrap "${args[@]}" "$suite" "$out" "${sources[@]}"
# Keep the package lists out of the result (they are stale the day after) but leave the
# sources so `apt-get update` works on the device.
rm -rf "$out"/var/lib/apt/lists/*
mkdir -p "$out"/var/lib/apt/lists/partial
