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
# two workers, each with its own proxy and test servers (the tests of a file stay together); the test that
# restarts the Docker daemon runs alone afterwards
.venv/bin/pytest -q -p no:cacheprovider -n 2 --dist loadgroup -m "not restarts_dockerd" "$@"
rc=0
.venv/bin/pytest -q -p no:cacheprovider -m restarts_dockerd "$@" || rc=$?
[ "$rc" -eq 5 ] && rc=0  # the arguments selected none of them
exit "$rc"
