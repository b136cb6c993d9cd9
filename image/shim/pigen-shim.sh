#!/usr/bin/env bash
# Run a pi-gen stage against an existing root file system, without pi-gen.
#
#   image/shim/pigen-shim.sh run --rootfs DIR --stage DIR [--first-user NAME] [--hostname NAME]
#   image/shim/pigen-shim.sh packages --stage DIR     # the stage's package lists, one a line
#
# It gives a stage what pi-gen's build.sh gives it, and nothing more, so that a stage that
# works here works in pi-gen and the other way round:
#   - variables: ROOTFS_DIR, STAGE_DIR, STAGE_WORK_DIR, SUB_STAGE_DIR, FIRST_USER_NAME,
#     TARGET_HOSTNAME, RELEASE, ARCH (exported, as pi-gen does);
#   - functions: on_chroot (stdin is run by bash -e inside the root file system, with /proc,
#     /sys, /dev, /dev/pts, and tmpfs on /run and /tmp), copy_previous, log;
#   - pi-gen's order: the stage's executable prerun.sh, then each sub-stage folder (in name
#     order, skipping those with a SKIP file) with, for i in 00..99: NN-debconf,
#     NN-packages-nr, NN-packages, NN-patches (refused: not supported here), NN-run.sh (on
#     the host, if executable, in the sub-stage folder), NN-run-chroot.sh (through on_chroot).
# Packages already installed (image/debian/mkrootfs.sh installs the stage's lists up front)
# are not installed again; missing ones are installed with apt-get in the chroot.
# Everything runs in a private mount namespace, so no mount outlives the shim.
set -euo pipefail

usage() {
    sed -n '2,6p' "$0" >&2
    exit 2
}

# The packages of one NN-packages(-nr) file: comments and blank lines dropped.
read_packages() {
    sed -e 's/#.*//' "$1" | tr -s '[:blank:]' '\n' | sed '/^$/d'
}

stage_packages() {
    local stage="$1" sub file
    for sub in "$stage"/*/; do
        [ -f "${sub}SKIP" ] && continue
        for file in "$sub"[0-9][0-9]-packages "$sub"[0-9][0-9]-packages-nr; do
            if [ -f "$file" ]; then
                read_packages "$file"
            fi
        done
    done | sort -u
}

log() {
    printf '[pigen-shim %s] %s\n' "$(date +%T)" "$*" >&2
}

mount_once() {
    local target="$1"
    shift
    if ! mountpoint -q "$target"; then
        mount "$@" "$target"
    fi
}

on_chroot() {
    mount_once "${ROOTFS_DIR}/proc" -t proc proc
    mount_once "${ROOTFS_DIR}/dev" --bind /dev
    mount_once "${ROOTFS_DIR}/dev/pts" --bind /dev/pts
    mount_once "${ROOTFS_DIR}/sys" --bind /sys
    mount_once "${ROOTFS_DIR}/run" -t tmpfs tmpfs
    mount_once "${ROOTFS_DIR}/tmp" -t tmpfs tmpfs
    chroot "${ROOTFS_DIR}" /bin/bash -e "$@"
}

copy_previous() {
    if [ ! -d "${ROOTFS_DIR}" ]; then
        log "copy_previous: the shim runs a stage on an existing root file system; ${ROOTFS_DIR} is missing"
        return 1
    fi
}

install_packages() {
    local file="$1" recommends="$2" missing=() package
    while IFS= read -r package; do
        # shellcheck disable=SC2016  # ${Status} is dpkg-query's, not the shell's
        if ! chroot "${ROOTFS_DIR}" dpkg-query -W -f '${Status}\n' "$package" 2>/dev/null |
            grep -q '^install ok installed$'; then
            missing+=("$package")
        fi
    done < <(read_packages "$file")
    if [ "${#missing[@]}" -eq 0 ]; then
        log "${file##*/}: all installed"
        return 0
    fi
    log "${file##*/}: installing ${missing[*]}"
    local added_resolv=0
    if [ ! -e "${ROOTFS_DIR}/etc/resolv.conf" ] && [ ! -L "${ROOTFS_DIR}/etc/resolv.conf" ]; then
        cp /etc/resolv.conf "${ROOTFS_DIR}/etc/resolv.conf"
        added_resolv=1
    fi
    local flags=(-y -o Acquire::Retries=3)
    if [ "$recommends" = no ]; then
        flags+=(--no-install-recommends)
    fi
    on_chroot -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install "$@"' \
        apt-get "${flags[@]}" "${missing[@]}"
    if [ "$added_resolv" = 1 ]; then
        rm -f "${ROOTFS_DIR}/etc/resolv.conf"
    fi
}

run_sub_stage() {
    local i
    log "sub-stage ${SUB_STAGE_DIR##*/}"
    pushd "${SUB_STAGE_DIR}" >/dev/null
    for i in {00..99}; do
        if [ -f "${i}-debconf" ]; then
            log "${i}-debconf"
            on_chroot -c 'debconf-set-selections' <"${i}-debconf"
        fi
        if [ -f "${i}-packages-nr" ]; then
            install_packages "${SUB_STAGE_DIR}/${i}-packages-nr" no
        fi
        if [ -f "${i}-packages" ]; then
            install_packages "${SUB_STAGE_DIR}/${i}-packages" yes
        fi
        if [ -d "${i}-patches" ]; then
            log "${i}-patches: quilt patches are not supported by the shim"
            return 1
        fi
        if [ -f "${i}-run.sh" ]; then
            if [ -x "${i}-run.sh" ]; then
                log "${i}-run.sh"
                "./${i}-run.sh"
            else
                log "${i}-run.sh: not executable, skipped (as pi-gen does)"
            fi
        fi
        if [ -f "${i}-run-chroot.sh" ]; then
            log "${i}-run-chroot.sh"
            on_chroot <"${i}-run-chroot.sh"
        fi
    done
    popd >/dev/null
}

run_stage() {
    log "stage ${STAGE_DIR}"
    if [ -f "${STAGE_DIR}/SKIP" ]; then
        log "SKIP: nothing to do"
        return 0
    fi
    pushd "${STAGE_DIR}" >/dev/null
    if [ -x prerun.sh ]; then
        log "prerun.sh"
        ./prerun.sh
    fi
    local sub
    for sub in "${STAGE_DIR}"/*; do
        if [ -d "$sub" ] && [ ! -f "$sub/SKIP" ]; then
            SUB_STAGE_DIR="$sub"
            export SUB_STAGE_DIR
            run_sub_stage
        fi
    done
    popd >/dev/null
}

command="${1:-}"
[ -n "$command" ] || usage
shift
rootfs=""
stage=""
first_user="admin"
hostname="bluegrass"
while [ $# -gt 0 ]; do
    case "$1" in
        --rootfs) rootfs="$2"; shift 2 ;;
        --stage) stage="$2"; shift 2 ;;
        --first-user) first_user="$2"; shift 2 ;;
        --hostname) hostname="$2"; shift 2 ;;
        *) usage ;;
    esac
done
[ -n "$stage" ] || usage
stage="$(realpath "$stage")"

case "$command" in
    packages)
        stage_packages "$stage"
        ;;
    run)
        [ -n "$rootfs" ] || usage
        if [ "$(id -u)" != 0 ]; then
            echo "pigen-shim: must run as root (chroot, mounts)" >&2
            exit 1
        fi
        if [ -z "${PIGEN_SHIM_NAMESPACE:-}" ]; then
            # A private mount namespace: the chroot's mounts end with the shim, whatever happens.
            PIGEN_SHIM_NAMESPACE=1 exec unshare --mount --propagation private -- "$0" run \
                --rootfs "$rootfs" --stage "$stage" --first-user "$first_user" --hostname "$hostname"
        fi
        ROOTFS_DIR="$(realpath "$rootfs")"
        STAGE_DIR="$stage"
        STAGE_WORK_DIR="$(dirname "$ROOTFS_DIR")"
        FIRST_USER_NAME="$first_user"
        TARGET_HOSTNAME="$hostname"
        ARCH="$(chroot "$ROOTFS_DIR" dpkg --print-architecture)"
        # shellcheck disable=SC1091  # the image's os-release, not ours
        RELEASE="$(. "$ROOTFS_DIR/etc/os-release" && echo "${VERSION_CODENAME:-unknown}")"
        export ROOTFS_DIR STAGE_DIR STAGE_WORK_DIR FIRST_USER_NAME TARGET_HOSTNAME ARCH RELEASE
        export -f log on_chroot mount_once copy_previous
        run_stage
        log "done"
        ;;
    *)
        usage
        ;;
esac
