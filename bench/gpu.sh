#!/usr/bin/env bash
# Every GPU benchmark of the project in one command, for a lent GPU machine (figures for one H200):
#
#     bash bench/gpu.sh [embed|select|all] [extra args for gpu_embed.py]
#
#   embed   bench/embed/gpu_embed.py: the pool pass and one fine-tune epoch (device and loader
#           preprocessing) against the bare ViT-B-32 forward / training step, and a generated
#           116,000-JPEG pool; about 5 minutes          -> $OUT/gpu-embed.json
#   select  bench/select/gpu_scale.py: 10M x 512, k = 2,000, end to end from a Zarr store, streamed,
#           sampled and in memory, peak host and GPU memory; bench/select/gpu_select.py: 1M x 512,
#           the paper's rule and the defaults (msp+knn, whose knn search runs on the GPU) in memory;
#           then bench_kmeans.py (FAISS vs torch Lloyd on 1-16 CPU threads, for --backend auto);
#           about 6 minutes        -> $OUT/gpu-scale.json, $OUT/gpu-select.json, $OUT/kmeans.{md,json}
#   all     both (about 11 minutes: split it in two calls when one call is capped at 10 minutes)
#
# Installs nothing from the network: what a bare GPU machine lacks (open_clip, zarr, pydantic, faiss)
# comes from wheels in .whl/, fetched beforehand by bench/fetch-gpu-wheels.sh and carried along.
# Results go to $OUT when set, else bench/gpu-results/; commit them beside each benchmark
# (bench/embed/h200/, bench/select/h200/) with the card's name.
set -euo pipefail
cd "$(dirname "$0")/.."
stage="${1:-all}"
[ $# -gt 0 ] && shift
case "$stage" in embed|select|all) ;; *) echo "error: stage must be embed, select or all, not '$stage'" >&2; exit 2 ;; esac
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/aloe-site .whl/*.whl
  export PYTHONPATH="/tmp/aloe-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
python3 -c "import open_clip, zarr, pydantic, faiss, torchvision, h5py, click, tqdm, yaml" || {
  echo "error: packages missing; run bench/fetch-gpu-wheels.sh where there is a network and carry .whl/" >&2
  exit 2
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
out="${OUT:-bench/gpu-results}"
mkdir -p "$out"
if [ "$stage" != select ]; then
  python3 bench/embed/gpu_embed.py --out "$out/gpu-embed.json" "$@"
fi
if [ "$stage" != embed ]; then
  python3 bench/select/gpu_scale.py --dir /tmp --out "$out/gpu-scale.json"
  python3 bench/select/gpu_select.py --dir /tmp > "$out/gpu-select.json"
  python3 bench/select/bench_kmeans.py --threads 1 4 8 16 --out "$out"
fi
