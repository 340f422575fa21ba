#!/usr/bin/env bash
# Everything headway needs on a fresh Debian/Ubuntu host with root: Docker Engine (started if needed),
# local base images, and a Python virtualenv at .venv with headway installed.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "run as root (sudo $0): headway installs and starts the Docker Engine" >&2
    exit 1
fi

need_apt=()
python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null || need_apt+=(python3)
python3 -m venv --help >/dev/null 2>&1 || need_apt+=(python3-venv)
command -v git >/dev/null 2>&1 || need_apt+=(git)
if [ ${#need_apt[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv python3-pip git >/dev/null
fi

scripts/bootstrap.sh

if [ ! -x .venv/bin/headway ] || [ pyproject.toml -nt .venv/.installed ]; then
    echo "[setup] python virtualenv .venv"
    python3 -m venv .venv
    .venv/bin/pip install -q --upgrade pip >/dev/null
    .venv/bin/pip install -q -e '.[dev]'
    touch .venv/.installed
fi
# byte-compile headway as `pip install` does for a regular install: an editable install is otherwise compiled
# from source at every start where PYTHONDONTWRITEBYTECODE is set
.venv/bin/python -m compileall -q src/headway >/dev/null
