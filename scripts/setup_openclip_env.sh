#!/usr/bin/env bash
# Make (or reuse) the separate Python environment in which vlmhub's open_clip adapter is tested.
#
# Why a separate environment: open_clip needs torchvision, and torchvision's compiled ops must be built for
# the exact torch beside it. The main venv has the CPU-only torch 2.13.0+cpu; every torchvision wheel this
# machine's package index offers (0.28.0 for torch 2.13.0, 0.29.x for 2.14.x) is a CUDA build whose _C.so links
# libtorch_cuda.so / libc10_cuda.so, which a CPU-only torch does not have, so `import torchvision` fails with
# "operator torchvision::nms does not exist". A CPU torchvision wheel is only on download.pytorch.org, which
# is unreachable here. Upgrading the main venv to the CUDA torch 2.14.1 + torchvision 0.29.1 is a 5.5 GB
# change under every other test. So this script builds a separate venv holding the matching CUDA pair
# (torch 2.14.1 + torchvision 0.29.1, which run fine on a CPU-only machine) plus open_clip and pytest, and
# runs the open_clip tests there with the checkout's src/ on PYTHONPATH. See docs/models.md.
#
# Cost (2 cores, wheels from the local package index): about 1 minute and 5.6 GB of disk the first time;
# a few seconds when the environment is already there (the script is idempotent).
#
# Usage:
#   scripts/setup_openclip_env.sh               create/refresh the environment, print its python
#   scripts/setup_openclip_env.sh --test [ARGS] ... then run the open_clip tests (extra ARGS go to pytest)
#   scripts/setup_openclip_env.sh --print-python   print the environment's python, creating nothing
#
# Environment variables:
#   VLMHUB_OPENCLIP_VENV   where the environment lives (default: ${XDG_CACHE_HOME:-$HOME/.cache}/vlmhub-openclip-venv,
#                          outside the checkout so git never sees it and fresh clones reuse it)
#   VLMHUB_OPENCLIP_REQS   the packages to install (default below); change it when the torch pair changes
#   PYTHON                 the interpreter to build the venv from (default: the main venv's base python, else
#                          python3.11, else python3; the local torch wheels are for CPython 3.11)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VLMHUB_OPENCLIP_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/vlmhub-openclip-venv}"
REQS="${VLMHUB_OPENCLIP_REQS:-torch==2.14.1 torchvision==0.29.1 open_clip_torch>=2.20 numpy pillow pytest}"
STAMP="$VENV/.vlmhub-openclip-stamp"

mode="setup"
if [[ "${1:-}" == "--test" ]]; then mode="test"; shift; fi
if [[ "${1:-}" == "--print-python" ]]; then echo "$VENV/bin/python"; exit 0; fi

base_python() {
  if [[ -n "${PYTHON:-}" ]]; then echo "$PYTHON"; return; fi
  if [[ -x "$ROOT/.venv/bin/python" ]]; then
    "$ROOT/.venv/bin/python" -c 'import sys; print(getattr(sys, "_base_executable", sys.executable))'
    return
  fi
  command -v python3.11 || command -v python3  # the torch wheels on the local index are cp311
}

healthy() {
  [[ -x "$VENV/bin/python" ]] && [[ -f "$STAMP" ]] && [[ "$(cat "$STAMP")" == "$REQS" ]] &&
    "$VENV/bin/python" -c 'import torch, torchvision, torchvision.ops, open_clip, pytest, numpy, PIL' >/dev/null 2>&1
}

if healthy; then
  echo "open_clip environment ready: $VENV" >&2
else
  echo "building the open_clip environment in $VENV (about 1 minute, 5.6 GB) ..." >&2
  start=$SECONDS
  PY="$(base_python)"
  if [[ ! -x "$VENV/bin/python" ]]; then
    mkdir -p "$(dirname "$VENV")"
    "$PY" -m venv "$VENV"
  fi
  # shellcheck disable=SC2086  # REQS is a space-separated list of requirement specifiers
  "$VENV/bin/python" -m pip install --quiet --no-cache-dir --disable-pip-version-check $REQS
  "$VENV/bin/python" -c 'import torch, torchvision, torchvision.ops, open_clip; print("torch", torch.__version__, "torchvision", torchvision.__version__, "open_clip", open_clip.__version__)' >&2
  echo "$REQS" > "$STAMP"
  echo "open_clip environment built in $((SECONDS - start))s: $VENV" >&2
fi

if [[ "$mode" == "test" ]]; then
  cd "$ROOT"
  # --noconftest: the environment holds only what the open_clip tests need, not the whole project's deps
  PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 VLMHUB_REQUIRE_OPENCLIP=1 \
    exec "$VENV/bin/python" -m pytest -p no:cacheprovider --noconftest -q "$ROOT/tests/test_adapters.py" -k "TestOpenClip" "$@"
fi
echo "$VENV/bin/python"
