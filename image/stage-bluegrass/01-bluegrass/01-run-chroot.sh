#!/bin/bash
# pi-gen, inside the image (piped into on_chroot): accounts, Bluegrass's venv, services.
set -euo pipefail

admin="$(cat /etc/bluegrass/admin-user)"

# --- accounts: no password anywhere ---------------------------------------------------------
if ! id -u "${admin}" >/dev/null 2>&1; then
    useradd --create-home --shell /bin/bash --user-group "${admin}"
fi
# "*": no password can ever match, yet key logins work (a "!" would lock SSH keys out too
# where sshd runs without PAM).
usermod -p '*' "${admin}"
for group in sudo adm systemd-journal; do
    if getent group "${group}" >/dev/null; then
        usermod -a -G "${group}" "${admin}"
    fi
done
if [ -d /etc/sudoers.d ]; then
    # The admin has no password to type: sudo without one (reachable only with an SSH key).
    printf '%s ALL=(ALL) NOPASSWD: ALL\n' "${admin}" >/etc/sudoers.d/010_bluegrass-admin
    chmod 0440 /etc/sudoers.d/010_bluegrass-admin
fi
usermod -p '!*' root

# --- Bluegrass in its own venv, from the wheels the build host made -------------------------
# Nothing from the build host's pip settings (PIP_FIND_LINKS, PIP_INDEX_URL, ...) applies here.
for name in "${!PIP_@}"; do
    unset "${name}"
done
rm -rf /opt/bluegrass
python3 -m venv /opt/bluegrass
PIP_DISABLE_PIP_VERSION_CHECK=1 /opt/bluegrass/bin/pip install --quiet --no-index \
    --no-cache-dir --find-links /var/cache/bluegrass-wheels bluegrass-appliance
rm -rf /var/cache/bluegrass-wheels
/opt/bluegrass/bin/bluegrass-appliance --help >/dev/null
# On PATH for people (and for sudo, whose secure_path has no /opt/bluegrass/bin).
ln -sf /opt/bluegrass/bin/bluegrass-appliance /usr/local/bin/bluegrass-appliance

# --- services --------------------------------------------------------------------------------
systemctl enable bluegrass-appliance.service bluegrass-firstboot.service avahi-daemon.service
# SSH is off unless the first-boot file gives a key; every Pi makes its own host keys.
for unit in ssh.service ssh.socket; do
    if [ -e "/usr/lib/systemd/system/${unit}" ] || [ -e "/lib/systemd/system/${unit}" ]; then
        systemctl disable "${unit}"
    fi
done
rm -f /etc/ssh/ssh_host_*
