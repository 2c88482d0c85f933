#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite, slow tests included, then the open_clip adapter tests in
# their own environment (open_clip needs torchvision, which cannot sit beside the CPU torch: docs/models.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# with the shared mirror beside the checkout (as in CI), tests that need it must find it: fail, never skip
if [ -d ../shared/data ]; then export VLMHUB_REQUIRE_SHARED_DATA="${VLMHUB_REQUIRE_SHARED_DATA:-1}"; fi
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
if [ "${VLMHUB_SKIP_OPENCLIP:-0}" != "1" ]; then
  bash scripts/setup_openclip_env.sh --test
fi
