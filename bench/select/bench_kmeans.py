"""Benchmark: which k-means should ``--backend auto`` pick on a CPU? FAISS, the torch Lloyd, scikit-learn.

The three run the same job, the k-means inside ``aloe-select`` (L2-normalized float32 rows, every point
used for training, ``niter`` Lloyd iterations, then every row assigned): ``faiss.Kmeans`` as
:mod:`aloe.selector.clustering` calls it, :func:`aloe.selector.clustering.torch_kmeans`, and
``sklearn.cluster.KMeans`` (Lloyd, random init, one run, ``tol=0`` so it runs every iteration).
For each thread count the backends take turns, ``--reps`` times each (so a busy neighbour hurts them
alike); the median wall time is reported with each backend's ratio to FAISS (the anchor, measured in
the same run). The data: a seeded mixture of ``k`` Gaussian clusters in ``D`` dimensions.

    python bench/select/bench_kmeans.py                        # 100,000 x 512, k = 400, 1 and all cores
    python bench/select/bench_kmeans.py --threads 1 4 8 16 --out bench/select/h200   # a many-core machine

Writes ``kmeans.json`` and ``kmeans.md`` into ``--out`` (default: this folder).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from aloe.loop.workers import set_library_threads

HERE = Path(__file__).resolve().parent


def make_data(n: int, dim: int, k: int, seed: int, noise: float) -> np.ndarray:
    """``n`` unit rows around ``k`` random centres (float32); ``noise`` is the per-coordinate spread
    (the centres' is 1), large enough that the clusters overlap and Lloyd keeps moving for every
    iteration (scikit-learn stops early once no assignment changes, even with ``tol=0``)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim)).astype(np.float32)
    x = centres[rng.integers(0, k, size=n)] + rng.normal(scale=noise, size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def run_faiss(x: np.ndarray, k: int, niter: int, seed: int) -> tuple[float, int]:
    import faiss

    kmeans = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed, max_points_per_centroid=len(x) // k + 2,
                          min_points_per_centroid=1, verbose=False)
    kmeans.train(x)
    distance, _ = kmeans.index.search(x, 1)
    return float(distance.sum()), niter


def run_torch(x: np.ndarray, k: int, niter: int, seed: int) -> tuple[float, int]:
    from aloe.selector.clustering import torch_kmeans

    _, _, distance = torch_kmeans(x, k, niter=niter, seed=seed, device="cpu")
    return float(distance.sum()), niter


def run_sklearn(x: np.ndarray, k: int, niter: int, seed: int) -> tuple[float, int]:
    from sklearn.cluster import KMeans

    model = KMeans(k, init="random", n_init=1, max_iter=niter, tol=0.0, algorithm="lloyd", random_state=seed)
    model.fit(x)
    return float(model.inertia_), int(model.n_iter_)


BACKENDS = {"faiss": run_faiss, "torch": run_torch, "sklearn": run_sklearn}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--k", type=int, default=400)
    parser.add_argument("--niter", type=int, default=20)
    parser.add_argument("--noise", type=float, default=3.0)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=sorted({1, os.cpu_count() or 1}))
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=list(BACKENDS))
    parser.add_argument("--out", type=Path, default=HERE, help="folder for kmeans.json and kmeans.md [this folder]")
    parser.add_argument("--render", type=Path, help="only rewrite the table from this kmeans.json")
    args = parser.parse_args()
    if args.render:
        write_markdown(json.loads(args.render.read_text()), args.render.with_suffix(".md"))
        return

    x = make_data(args.n, args.dim, args.k, seed=0, noise=args.noise)
    record = {"n": args.n, "dim": args.dim, "k": args.k, "niter": args.niter, "noise": args.noise, "reps": args.reps,
              "cpu_count": os.cpu_count(), "machine": platform.machine(), "processor": platform.processor(),
              "load_before": os.getloadavg(), "runs": {}}
    for threads in args.threads:
        set_library_threads(threads)
        times: dict[str, list[float]] = {name: [] for name in args.backends}
        inertia: dict[str, float] = {}
        iterations: dict[str, list[int]] = {name: [] for name in args.backends}
        with threadpool_limits(threads):
            for rep in range(args.reps):
                for name in args.backends:
                    started = time.perf_counter()
                    inertia[name], done = BACKENDS[name](x, args.k, args.niter, seed=rep)
                    times[name].append(time.perf_counter() - started)
                    iterations[name].append(done)
                    print(f"threads {threads} rep {rep} {name}: {times[name][-1]:.2f} s, {done} iterations",
                          flush=True)
        medians = {name: statistics.median(values) for name, values in times.items()}
        record["runs"][str(threads)] = {
            "seconds": times, "median_s": medians, "iterations": iterations, "inertia_last_rep": inertia,
            "ratio_to_faiss": (
                {name: medians[name] / medians["faiss"] for name in medians} if "faiss" in medians else {}
            ),
        }
    record["load_after"] = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "kmeans.json").write_text(json.dumps(record, indent=2) + "\n")
    write_markdown(record, args.out / "kmeans.md")


def write_markdown(record: dict, path: Path) -> None:
    """The results table: per thread count, each backend's median time, its time per Lloyd iteration
    (scikit-learn may stop before ``niter``) and that per-iteration time's ratio to FAISS's."""
    names = list(next(iter(record["runs"].values()))["median_s"])
    lines = [f"# k-means backends, {record['n']:,} x {record['dim']}, k = {record['k']}, up to {record['niter']} "
             f"iterations ({record['cpu_count']} CPUs, load {record['load_before'][0]:.1f} before, "
             f"{record['load_after'][0]:.1f} after)", "",
             "median wall s / s per iteration (per-iteration ratio to faiss)", "",
             "| threads | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for threads, run in record["runs"].items():
        per_iteration = {name: run["median_s"][name] / statistics.median(run["iterations"][name]) for name in names}
        cells = [f"{run['median_s'][name]:.2f} / {per_iteration[name]:.3f} "
                 f"({per_iteration[name] / per_iteration['faiss']:.2f})"
                 for name in names]
        lines.append(f"| {threads} | " + " | ".join(cells) + " |")
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
