"""ALOE selection at 10,000,000 x 512, k = 2,000 on one CUDA GPU, end to end (store read included).

Builds a one-round Zarr store (float16 features, C = 100, 1,000 labels; not timed in the ratios),
then runs :func:`aloe.selector.select.select_round` with the torch k-means on the GPU:

- ``streamed``: the features stream from the store block by block into GPU memory (the host holds
  O(N) vectors and one block), cold (CUDA start-up included) then warm;
- ``streamed-sample``: the same with ``kmeans_sample`` (1,000,000 by default): k-means trains on the
  sample, every item is assigned in a second streamed pass;
- ``in-memory``: the whole round read into host memory first (the path used when it fits).

For each: wall time, per-step timings, peak host resident memory of the step (``VmHWM``, reset
before each through ``/proc/self/clear_refs``) and peak GPU memory (``max_memory_allocated``). The
streamed and in-memory batches are compared. Prints one JSON object and writes it to ``--out``.
Needs torch with CUDA, numpy, faiss-cpu, zarr, pydantic, click, pyyaml (no faiss-gpu, no open_clip).

    python bench/select/gpu_scale.py --out $OUT/gpu-scale.json     # 10M, about 14 GB of disk
    python bench/select/gpu_scale.py --n 200000 --sample 50000      # a quick check (CPU without CUDA)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pool import build_round  # noqa: E402

from aloe.selector.config import SelectConfig  # noqa: E402
from aloe.selector.select import select_round  # noqa: E402
from aloe.store import open_store  # noqa: E402


def _host_peak_mib() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peaks() -> float:
    """Reset the host and GPU peaks; return the resident memory now (MiB)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) / 1024 for line in handle if line.startswith("VmRSS:"))


def measure(store, config: SelectConfig) -> tuple[dict, np.ndarray]:
    """One selection: wall time, timings, host and GPU peaks; and its batch."""
    rss = _reset_peaks()
    started = time.perf_counter()
    selection = select_round(store, 0, config)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    wall = time.perf_counter() - started
    result = {
        "wall_s": round(wall, 3),
        "timings": {key: round(value, 4) for key, value in selection.timings.items()},
        "host_rss_before_mib": round(rss, 1),
        "host_peak_mib": round(_host_peak_mib(), 1),
        "gpu_peak_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1) if torch.cuda.is_available() else None,
        "notes": selection.notes,
    }
    return result, selection.positions


def main() -> None:
    """Build the store, run the three paths, print and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--budget", type=int, default=1000, help="B; k = 2 * max(B, C)")
    parser.add_argument("--niter", type=int, default=20)
    parser.add_argument("--sample", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, default=None, help="where to build the store [a temp dir]")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "scale.zarr"
        build_s = build_round(path, args.n, args.dim)
        store = open_store(path, mode="r")
        base = {"budget": args.budget, "backend": "torch", "niter": args.niter, "seed": 0, "score": "gradnorm",
                "per_cluster": 1}
        runs = {}
        runs["streamed-cold"], streamed = measure(store, SelectConfig(**base, stream="always"))
        runs["streamed-warm"], again = measure(store, SelectConfig(**base, stream="always"))
        runs["streamed-sample"], _ = measure(store, SelectConfig(**base, kmeans_sample=args.sample))
        runs["in-memory"], in_memory = measure(store, SelectConfig(**base, stream="never"))
    float32_mib = args.n * args.dim * 4 / 2**20
    for run in runs.values():
        grown = run["host_peak_mib"] - run["host_rss_before_mib"]
        run["host_peak_over_float32_features"] = round(grown / float32_mib, 3)
    result = {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu",
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "n": args.n,
        "dim": args.dim,
        "k": 2 * max(args.budget, 100),
        "niter": args.niter,
        "sample": args.sample,
        "build_store_s": round(build_s, 2),
        "float32_features_mib": round(float32_mib, 1),
        "streamed_repeats_batch": bool(np.array_equal(streamed, again)),
        "streamed_equals_in_memory_batch": bool(np.array_equal(streamed, in_memory)),
        "runs": runs,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
