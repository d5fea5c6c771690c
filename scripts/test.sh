#!/usr/bin/env bash
# The test suite: set up if needed, make sure PostgreSQL and Redis answer when installed, run pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/services.sh || true   # tests that need a service skip with the reason when it is absent
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/python -m pytest "$@"
