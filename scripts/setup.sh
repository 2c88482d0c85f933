#!/usr/bin/env bash
# Set up vlmhub on a fresh machine (idempotent): Debian WordNet 3.0, a venv in .venv with the CPU torch
# 2.13.0 wheel and vlmhub (editable) with its test extra. Re-running only redoes what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: WordNet 3.0 (the semantic graph), PostgreSQL 15 (the shared-hub database; tests
# start a throwaway cluster), chromium + chromium-driver (browser tests of the web pages).
need=()
if [ ! -f /usr/share/wordnet/data.noun ] && [ -z "${VLMHUB_WORDNET_SOURCE:-}" ]; then
  need+=(wordnet-base wordnet-sense-index)
fi
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then need+=(postgresql); fi
if ! command -v chromium >/dev/null 2>&1; then need+=(chromium); fi
if ! command -v chromedriver >/dev/null 2>&1; then need+=(chromium-driver); fi
if [ "${#need[@]}" -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "setup: installing Debian packages: ${need[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv" >&2
  "$PY" -m venv .venv
fi

stamp=".venv/.vlmhub-setup-$(cat pyproject.toml scripts/setup.sh | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "setup: installing torch 2.13.0 (CPU) and vlmhub[test,ray]" >&2
  .venv/bin/python -m pip install -q --disable-pip-version-check "torch==2.13.0"
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test,ray]"
  rm -f .venv/.vlmhub-setup-*
  touch "$stamp"
fi
