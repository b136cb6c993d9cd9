#!/bin/bash
# pi-gen, on the build host (the working directory is this sub-stage): put Bluegrass's files
# into the root file system. Everything that must run inside the image is in
# 01-run-chroot.sh. ROOTFS_DIR and FIRST_USER_NAME come from pi-gen (or image/shim).
set -euo pipefail

shopt -s nullglob
wheels=(files/wheels/*.whl)
shopt -u nullglob
if [ "${#wheels[@]}" -eq 0 ]; then
    echo "stage-bluegrass: no wheels in $(pwd)/files/wheels; image/wheels.py makes them" >&2
    exit 1
fi

etc="${ROOTFS_DIR}/etc"
units="${etc}/systemd/system"

install -d -m 755 "${ROOTFS_DIR}/var/cache/bluegrass-wheels"
install -m 644 "${wheels[@]}" "${ROOTFS_DIR}/var/cache/bluegrass-wheels/"

install -d -m 755 "${units}" "${units}/ssh.service.d" "${etc}/bluegrass" \
    "${etc}/systemd/system-preset" "${etc}/systemd/journald.conf.d" \
    "${etc}/ssh/sshd_config.d" "${etc}/udev/rules.d" "${etc}/avahi/services" \
    "${ROOTFS_DIR}/usr/lib/bluegrass" "${ROOTFS_DIR}/usr/share/doc/bluegrass" \
    "${ROOTFS_DIR}/boot/firmware"
install -m 644 files/bluegrass-appliance.service files/bluegrass-firstboot.service "${units}/"
install -m 644 files/ssh-hostkeys.conf "${units}/ssh.service.d/bluegrass-hostkeys.conf"
install -m 644 files/10-bluegrass.preset "${etc}/systemd/system-preset/"
install -m 644 files/journald-bluegrass.conf "${etc}/systemd/journald.conf.d/10-bluegrass.conf"
install -m 644 files/sshd-bluegrass.conf "${etc}/ssh/sshd_config.d/10-bluegrass.conf"
install -m 644 files/70-bluegrass-drive.rules "${etc}/udev/rules.d/"
install -m 644 files/bluegrass-panel.avahi.service "${etc}/avahi/services/bluegrass-panel.service"
# The appliance's settings: the panel on port 80 (the daemon creates the rest itself).
install -d -m 700 "${ROOTFS_DIR}/var/lib/bluegrass-appliance"
install -m 644 files/bluegrass-appliance.toml "${ROOTFS_DIR}/var/lib/bluegrass-appliance/"
install -m 755 files/bluegrass_firstboot.py "${ROOTFS_DIR}/usr/lib/bluegrass/bluegrass-firstboot"
install -m 644 files/README "${ROOTFS_DIR}/usr/share/doc/bluegrass/README"
install -m 644 files/bluegrass.toml "${ROOTFS_DIR}/usr/share/doc/bluegrass/bluegrass.toml.example"
# The file the user edits before the first boot (on the FAT boot partition).
install -m 644 files/bluegrass.toml "${ROOTFS_DIR}/boot/firmware/bluegrass.toml"
# The account an SSH key (if any) is given to at first boot.
printf '%s\n' "${FIRST_USER_NAME:-admin}" >"${etc}/bluegrass/admin-user"
chmod 644 "${etc}/bluegrass/admin-user"
