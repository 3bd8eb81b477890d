#!/usr/bin/env bash
# One command: set up the environment and run the demo brand on the embedded default (DuckDB + SQLite).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/tessera demo "$@"
