# shellcheck shell=bash
# Source this file: it creates (first time) or reuses (afterwards) the annoloop environment
# and exports what the commands need. Offline-safe; no manual step.
#
#   ANNOLOOP_PYTHON      the virtualenv's python
#   ANNOLOOP_LABEL_STUDIO_VENV  where the test suite's Label Studio server lives; built only
#                        when ANNOLOOP_SETUP_LABEL_STUDIO=1 (scripts/test.sh sets it)
#   PYTHONPATH           gains a folder where `import annoloop` resolves to this checkout
#   FIFTYONE_PLUGINS_DIR that same folder, so FiftyOne's loader finds the plugin
#
# The virtualenv lives under the user's cache, keyed by a hash of what defines it, so every
# clone of the repository shares one ~8 GB environment. Override with ANNOLOOP_VENV.

ANNOLOOP_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_annoloop_cache="${XDG_CACHE_HOME:-$HOME/.cache}/annoloop"
_annoloop_key="$( (cat "$ANNOLOOP_REPO/requirements.txt"; python3 -V; uname -m) | sha256sum | cut -c1-12)"
export ANNOLOOP_VENV="${ANNOLOOP_VENV:-$_annoloop_cache/venv-$_annoloop_key}"

if ! command -v python3 >/dev/null 2>&1; then
  echo "annoloop: python3 (3.10+) is required and was not found on PATH." >&2
  return 1 2>/dev/null || exit 1
fi

_annoloop_ls_key="$( (cat "$ANNOLOOP_REPO/requirements-labelstudio.txt"; python3 -V; uname -m) | sha256sum | cut -c1-12)"
export ANNOLOOP_LABEL_STUDIO_VENV="${ANNOLOOP_LABEL_STUDIO_VENV:-$_annoloop_cache/labelstudio-$_annoloop_ls_key}"
_annoloop_ls_args=()
if [ "${ANNOLOOP_SETUP_LABEL_STUDIO:-}" = "1" ]; then
  _annoloop_ls_args=(--labelstudio-venv "$ANNOLOOP_LABEL_STUDIO_VENV"
    --labelstudio-requirements "$ANNOLOOP_REPO/requirements-labelstudio.txt")
fi

# setup_env.py is fast when the environment is already complete (it checks stamp files).
python3 "$ANNOLOOP_REPO/scripts/setup_env.py" --venv "$ANNOLOOP_VENV" \
  --requirements "$ANNOLOOP_REPO/requirements.txt" \
  --annotation-requirements "$ANNOLOOP_REPO/requirements-annotation.txt" \
  "${_annoloop_ls_args[@]}" || { return 1 2>/dev/null || exit 1; }

export ANNOLOOP_PYTHON="$ANNOLOOP_VENV/bin/python"

# A folder holding only a link named `annoloop` to this checkout: importable as a package and
# discoverable as a plugin, whatever the checkout's own directory is called.
_annoloop_link_dir="$_annoloop_cache/links/$(printf '%s' "$ANNOLOOP_REPO" | sha256sum | cut -c1-12)"
mkdir -p "$_annoloop_link_dir"
ln -sfn "$ANNOLOOP_REPO" "$_annoloop_link_dir/annoloop"
export PYTHONPATH="$_annoloop_link_dir${PYTHONPATH:+:$PYTHONPATH}"
export FIFTYONE_PLUGINS_DIR="${FIFTYONE_PLUGINS_DIR:-$_annoloop_link_dir}"
export FIFTYONE_DO_NOT_TRACK="${FIFTYONE_DO_NOT_TRACK:-true}"
export FIFTYONE_ALLOW_LEGACY_ORCHESTRATORS="${FIFTYONE_ALLOW_LEGACY_ORCHESTRATORS:-true}"
export YOLO_OFFLINE="${YOLO_OFFLINE:-true}"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
unset _annoloop_cache _annoloop_key _annoloop_link_dir _annoloop_ls_key _annoloop_ls_args
