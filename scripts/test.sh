#!/usr/bin/env bash
# The test suite: set up if needed, make sure PostgreSQL and Redis answer when installed, run pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/services.sh || true   # tests that need a service skip with the reason when it is absent
# the storefront's browser test drives Debian's Chromium (Playwright never downloads a browser here)
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1 || \
    echo "could not install chromium; the browser test will skip" >&2
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/python -m pytest "$@"
