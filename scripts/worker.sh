#!/usr/bin/env bash
# A delegated-operations worker: runs scheduled annoloop (and other) operations until stopped.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
exec "$ANNOLOOP_VENV/bin/fiftyone" delegated launch "$@"
