#!/usr/bin/env bash
# The main job: set up if needed, then `modelshop demo` on embedded defaults (SQLite, bundled data, minilm).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export HF_HUB_OFFLINE=1
exec .venv/bin/modelshop demo "$@"
