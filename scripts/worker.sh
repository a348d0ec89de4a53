#!/usr/bin/env bash
# A delegated-operations worker: runs scheduled annoloop (and other) operations until stopped.
#
# Monitored (scripts/worker.py, FiftyOne's `fiftyone delegated launch --monitor` loop): each
# operation runs in a child process that this one pings every ANNOLOOP_MONITOR_S seconds
# (default 10). If the child dies (killed, out of memory) the operation is marked failed with
# that cause; FiftyOne's own command would leave it "running" forever. If this worker itself
# is killed, mark the operation failed by hand: `fiftyone delegated fail <id>` (README).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
exec "$ANNOLOOP_PYTHON" "$ANNOLOOP_REPO/scripts/worker.py" \
  --monitor-interval "${ANNOLOOP_MONITOR_S:-10}" "$@"
