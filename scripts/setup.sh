#!/usr/bin/env bash
# Set up vlmhub on a fresh machine (idempotent): Debian WordNet 3.0, a venv in .venv with the CPU torch
# 2.13.0 wheel and vlmhub (editable) with its test extra. Re-running only redoes what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -f /usr/share/wordnet/data.noun ] && [ -z "${VLMHUB_WORDNET_SOURCE:-}" ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "setup: installing Debian WordNet 3.0 (wordnet-base, wordnet-sense-index)" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wordnet-base wordnet-sense-index >/dev/null
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  "$PY" -m venv .venv
fi

stamp=".venv/.vlmhub-setup-$(cat pyproject.toml scripts/setup.sh | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "setup: installing torch 2.13.0 (CPU) and vlmhub[test]" >&2
  .venv/bin/python -m pip install -q --disable-pip-version-check "torch==2.13.0"
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]"
  rm -f .venv/.vlmhub-setup-*
  touch "$stamp"
fi
