#!/usr/bin/env bash
# The test suite, on an isolated throw-away database. Arguments are passed to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ANNOLOOP_REPO"
exec "$ANNOLOOP_PYTHON" -m pytest -p no:cacheprovider "$@" tests
