#!/usr/bin/env bash
# Run any command inside annoloop's environment, e.g. `bash scripts/run.sh python benchmarks/bench_zcore.py`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
export PATH="$ANNOLOOP_VENV/bin:$PATH"
exec "$@"
