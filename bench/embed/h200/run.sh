#!/usr/bin/env bash
# The embedder's GPU benchmark in one command, from the repository root:
#
#     bash bench/embed/h200/run.sh            # figures -> $OUT/gpu-embed.json, else bench/embed/h200/
#
# Installs nothing from the network: packages the GPU machine lacks (open_clip, zarr, pydantic, ...)
# come from wheels in .whl/, fetched beforehand by bench/embed/h200/fetch-wheels.sh on a networked
# machine and carried along. Extra arguments go to gpu_embed.py (e.g. --jpeg-n 0 to skip the JPEG pool).
# About 5 minutes on one H200 (the 116,000-JPEG pool is generated first, about 1 minute on 16 cores).
set -euo pipefail
cd "$(dirname "$0")/../../.."
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/aloe-site .whl/*.whl
  export PYTHONPATH="/tmp/aloe-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
python3 -c "import open_clip, zarr, pydantic, torchvision, h5py, click, tqdm, yaml" || {
  echo "error: packages missing; run bench/embed/h200/fetch-wheels.sh where there is a network and carry .whl/" >&2
  exit 2
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
out="${OUT:-bench/embed/h200}"
python3 bench/embed/gpu_embed.py --out "$out/gpu-embed.json" "$@"
