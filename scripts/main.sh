#!/usr/bin/env bash
# The main job: build the demo dataset in FiftyOne's embedded database and run the loop on it.
# Arguments are passed to `python -m annoloop.cli loop` (try --help).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
exec "$ANNOLOOP_PYTHON" -m annoloop.cli loop "$@"
