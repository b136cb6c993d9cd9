#!/usr/bin/env bash
# make image: Raspberry Pi OS Lite (arm64) turned into the Bluegrass appliance by pi-gen,
# pinned to a pi-gen release tag, with image/stage-bluegrass as its last stage.
#
# Needs a Linux host with root and network access to GitHub (pi-gen itself), Debian's and
# Raspberry Pi's package archives, and PyPI (the wheels); 20-60 minutes and ~10 GB of disk.
# It does not run on our CI machines (no access to GitHub or archive.raspberrypi.com there):
# `make image-debian` is the build that does.
#
#   PIGEN_REF=<tag> PIGEN_DOCKER=1 image/pigen/build.sh
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
pigen_repo="${PIGEN_REPO:-https://github.com/RPi-Distro/pi-gen.git}"
# The arm64 release of 2026-06-18 (Raspberry Pi OS trixie). Upstream's branches move and have
# broken builds before; a tag does not.
pigen_ref="${PIGEN_REF:-2026-06-18-raspios-trixie-arm64}"
work="${PIGEN_WORK:-$root/build/pi-gen}"
stage_name="stage-bluegrass"

die() {
    echo "make image: $*" >&2
    exit 1
}

[ "$(id -u)" = 0 ] || die "pi-gen must run as root (sudo make image)"
command -v git >/dev/null || die "git is missing"
[ -x "$python" ] || die "$python is missing: run make setup first"
case "$pigen_ref" in
    *-arm64) ;;
    *) die "PIGEN_REF=$pigen_ref is not an arm64 release tag (pi-gen's ARCH comes from the branch)" ;;
esac
git ls-remote --exit-code --tags "$pigen_repo" "refs/tags/$pigen_ref" >/dev/null ||
    die "cannot reach $pigen_repo or it has no tag $pigen_ref (this build needs the network)"

if [ -d "$work/.git" ]; then
    git -C "$work" fetch --depth 1 origin "refs/tags/$pigen_ref:refs/tags/$pigen_ref"
    git -C "$work" checkout --force --quiet "refs/tags/$pigen_ref"
    git -C "$work" clean -fdx --quiet -e work -e deploy
else
    rm -rf "$work"
    git clone --quiet --depth 1 --branch "$pigen_ref" "$pigen_repo" "$work"
fi
echo "make image: pi-gen at $(git -C "$work" describe --tags --exact-match)" >&2

# Our stage, executable bits restored (a copy can lose them), with arm64 wheels.
rm -rf "${work:?}/$stage_name"
cp -a "$root/image/$stage_name" "$work/$stage_name"
chmod +x "$work/$stage_name/prerun.sh" "$work/$stage_name"/*/[0-9][0-9]-run.sh
"$python" "$root/image/wheels.py" --arch arm64 --out "$root/build/image-cache/wheels-arm64" >/dev/null
mkdir -p "$work/$stage_name/01-bluegrass/files/wheels"
cp "$root"/build/image-cache/wheels-arm64/*.whl "$work/$stage_name/01-bluegrass/files/wheels/"
# Only our image, not also the plain Lite one.
touch "$work/stage2/SKIP_IMAGES"

# pi-gen insists on a first-user password when the first-boot rename is off. It gets a random
# one that nobody ever sees, and the stage then removes it (the account keeps no password).
first_pass="$(head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 24)"
umask 077
cat >"$work/config" <<CONFIG
IMG_NAME=bluegrass
RELEASE=trixie
TARGET_HOSTNAME=bluegrass
FIRST_USER_NAME=admin
FIRST_USER_PASS=$first_pass
DISABLE_FIRST_BOOT_USER_RENAME=1
ENABLE_SSH=0
ENABLE_CLOUD_INIT=0
DEPLOY_COMPRESSION=xz
STAGE_LIST="stage0 stage1 stage2 $stage_name"
CONFIG
umask 022

cd "$work"
status=0
if [ "${PIGEN_DOCKER:-0}" = 1 ]; then
    ./build-docker.sh || status=$?
else
    ./build.sh || status=$?
fi
rm -f "$work/config"
[ "$status" = 0 ] || die "pi-gen failed (exit $status); its log is in $work/work/*/build.log"
echo "make image: done; the image, its .bmap and .info are in $work/deploy/" >&2
ls -l "$work/deploy" >&2
