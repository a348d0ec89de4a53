#!/usr/bin/env bash
# A delegated-operations worker: runs scheduled annoloop (and other) operations until stopped.
#
# Monitored: each operation runs in a child process watched by this one, which pings the
# operation's record every ANNOLOOP_MONITOR_S seconds (default 10) and marks it failed with
# the exit code if the child dies (killed, out of memory). Without it, a killed operation
# stays "running" forever and its run records look busy.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
exec "$ANNOLOOP_VENV/bin/fiftyone" delegated launch --monitor \
  --monitor-interval "${ANNOLOOP_MONITOR_S:-10}" "$@"
