#!/usr/bin/env bash
# Set up the environment, then run the built-in offline default: ALOE against random on a
# long-tailed MNIST pool embedded by EfficientNet-Lite0, a few rounds, and write a report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
exec .venv/bin/aloe demo "$@"
