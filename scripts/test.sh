#!/usr/bin/env bash
# One command: set up the environment and run the whole test suite (PostgreSQL tests included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The operational-store tests run against the real PostgreSQL on 127.0.0.1:5432 (database `test`).
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start || true
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
exec .venv/bin/python -m pytest "$@"
