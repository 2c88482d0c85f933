#!/usr/bin/env bash
# Screenshots of every web page (desktop and 375 px) into docs/img/ with headless chromium; see scripts/screenshots.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} TOKENIZERS_PARALLELISM=false
"$PY" scripts/screenshots.py "$@"
"$PY" scripts/screenshots.py --width 375 "$@"
