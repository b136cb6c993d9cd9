#!/bin/bash
# pi-gen: a stage starts from a copy of the previous stage's root file system.
set -euo pipefail
if [ ! -d "${ROOTFS_DIR}" ]; then
    copy_previous
fi
