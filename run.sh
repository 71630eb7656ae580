#!/usr/bin/env bash
# Set up (idempotent) and start the chat on http://127.0.0.1:7860 with the bundled defaults.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
exec .venv/bin/rag ui "$@"
