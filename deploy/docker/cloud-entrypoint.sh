#!/usr/bin/env bash
# Makes the data root on the first start (`init` is safe to repeat), then runs the command.
set -euo pipefail
bluegrass-cloud --data "${BLUEGRASS_DATA:-/data}" init >/dev/null
exec "$@"
