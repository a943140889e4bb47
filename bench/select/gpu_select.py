"""ALOE selection end to end with the torch k-means on CUDA: 1,000,000 x 512, k = 2,000.

Needs torch (with CUDA), numpy, faiss-cpu, zarr, pydantic, click, pyyaml; no faiss-gpu. Prints one
JSON object: the card, the sizes, the per-step timings of a cold run (CUDA start-up included) and a
warm one of the paper's rule (GradNorm, one pick per cluster), a warm run of the defaults
(``msp+knn``, whose knn search runs on the GPU), the torch k-means alone
on the same GPU input, and peak GPU / host memory.

    python bench/select/gpu_select.py            # the full size
    python bench/select/gpu_select.py --n 20000  # a quick check (runs on the CPU without CUDA)
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pool import build_round  # noqa: E402

from aloe.selector.clustering import torch_kmeans  # noqa: E402
from aloe.selector.config import SelectConfig  # noqa: E402
from aloe.selector.rule import cluster_input, cuda_cluster_input  # noqa: E402
from aloe.selector.select import select_round  # noqa: E402
from aloe.selector.view import RoundView  # noqa: E402
from aloe.store import open_store  # noqa: E402


def main() -> None:
    """Build the round, select twice (cold, warm), time k-means alone, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--budget", type=int, default=1000, help="B; k = 2 * max(B, C)")
    parser.add_argument("--niter", type=int, default=20)
    parser.add_argument("--dir", type=Path, default=None, help="where to build the store [a temp dir]")
    args = parser.parse_args()

    cuda = torch.cuda.is_available()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "gpu.zarr"
        build_s = build_round(path, args.n, args.dim, args.classes)
        store = open_store(path, mode="r")
        config = SelectConfig(budget=args.budget, backend="torch", niter=args.niter, seed=0, score="gradnorm",
                              per_cluster=1)
        runs = []
        for _ in range(2):
            started = time.perf_counter()
            selection = select_round(store, 0, config)
            runs.append({"wall_s": time.perf_counter() - started, **selection.timings})
        defaults = SelectConfig(budget=args.budget, backend="torch", niter=args.niter, seed=0)  # the defaults: msp+knn
        started = time.perf_counter()
        default_timings = select_round(store, 0, defaults).timings
        by_default = {"wall_s": time.perf_counter() - started, **default_timings}
        view = RoundView.from_round(store.round(0), store.ids)
        x = cuda_cluster_input(view, view.unlabeled_positions, True) if cuda else None
        kmeans_alone = input_diff = None
        if cuda:
            host = cluster_input(view, view.unlabeled_positions, True)
            input_diff = float((x.cpu() - torch.from_numpy(host)).abs().max())
            del host
            torch.cuda.synchronize()
            started = time.perf_counter()
            torch_kmeans(x, selection.k, niter=args.niter, seed=0)
            torch.cuda.synchronize()
            kmeans_alone = time.perf_counter() - started
    result = {
        "device": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
        "torch": torch.__version__,
        "n": args.n,
        "dim": args.dim,
        "classes": args.classes,
        "budget": args.budget,
        "k": selection.k,
        "niter": args.niter,
        "backend_note": [note for note in selection.notes if "backend" in note],
        "build_store_s": round(build_s, 3),
        "cold": {key: round(value, 4) for key, value in runs[0].items()},
        "warm": {key: round(value, 4) for key, value in runs[1].items()},
        "defaults_warm": {key: round(value, 4) for key, value in by_default.items()},
        "torch_kmeans_alone_s": None if kmeans_alone is None else round(kmeans_alone, 4),
        "warm_over_kmeans_alone": None if kmeans_alone is None else round(runs[1]["total"] / kmeans_alone, 3),
        "cuda_input_vs_host_max_abs_diff": input_diff,
        "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None,
        "peak_host_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
