#!/usr/bin/env bash
# The whole test suite against the real Docker Engine and nginx: installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "[test] ruff"
.venv/bin/ruff check src tests bench
echo "[test] mypy"
.venv/bin/mypy src/headway
echo "[test] pytest"
exec .venv/bin/pytest -q -p no:cacheprovider "$@"
