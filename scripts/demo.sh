#!/usr/bin/env bash
# The demo: installs what headway needs, then deploys examples/shop to production and staging on this machine,
# redeploys and rolls back under load, and prints the URLs and what happened.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python scripts/demo.py
