#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite, real models included.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh --browser
exec .venv/bin/python -m pytest "$@"
