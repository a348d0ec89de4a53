#!/usr/bin/env bash
# The test suite, on an isolated throw-away database. Arguments are passed to pytest.
set -euo pipefail
# The round-trip tests start a real Label Studio server: build its environment too.
export ANNOLOOP_SETUP_LABEL_STUDIO=1
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ANNOLOOP_REPO"
exec "$ANNOLOOP_PYTHON" -m pytest -p no:cacheprovider "$@" tests
