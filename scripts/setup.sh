#!/usr/bin/env bash
# Set up (or refresh) the project's virtual environment in .venv: aloe-al with its demo, evaluation-pool
# and test extras.
# Idempotent: a second run only checks that everything is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
"$PYTHON" - <<'PY' || { echo "error: aloe-al needs Python >= 3.11 (set PYTHON=/path/to/python3.11)" >&2; exit 2; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY
if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating .venv" >&2
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.aloe-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ scripts/setup.sh -nt "$stamp" ]; then
    echo "[setup] installing aloe-al and its dependencies (first time: a few minutes, torch is large)" >&2
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[demo,eval,dev]'
    touch "$stamp"
fi
