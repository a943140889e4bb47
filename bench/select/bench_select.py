"""Benchmark: the whole ALOE selection against FAISS k-means alone and a plain scikit-learn version.

For each pool size (default 100,000; ``--sizes 100000 1000000`` for the full issue), a one-round
store of N x 512 features (float16 in Zarr), C = 100 known classes, 1,000 labels is written, then
three measurements run one after another, each in its own fresh process (so each peak RSS is its own):

- ``aloe``: :func:`aloe.selector.select.select_round` with B = 500 (k = 1,000) and the GradNorm score
  (the score the plain version below implements): store read, scores,
  threshold, k-means (FAISS CPU, every point used), ranking;
- ``faiss``: ``faiss.Kmeans`` alone, same features (the unlabeled rows, L2-normalized, already in
  memory), same k, iterations, seed and training points; ``train`` timed alone and with the final
  assignment search;
- ``sklearn``: the same rule written plainly with numpy and ``sklearn.cluster.KMeans`` (Lloyd, random
  init, one run, ``tol=0`` so it runs all iterations), store read included.

Writes ``results.json`` and ``results.md`` beside this file (or ``--out``). The CPU may be shared with
other work: the load average before and after is recorded.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_aloe(store_path: Path, budget: int, niter: int) -> dict:
    """The whole selection, as ``aloe-select`` runs it (without the CSV and the record)."""
    from aloe.selector.config import SelectConfig
    from aloe.selector.select import select_round
    from aloe.store import open_store

    store = open_store(store_path)
    before = _rss_mib()
    started = time.perf_counter()
    selection = select_round(store, 0, SelectConfig(
        budget=budget, backend="faiss", niter=niter, seed=0, score="gradnorm", per_cluster=1))
    wall = time.perf_counter() - started
    return {"wall_s": wall, "timings": selection.timings, "k": selection.k, "notes": selection.notes,
            "rss_before_mib": before, "peak_rss_mib": _peak_mib(), "batch": selection.positions.tolist()}


def _unlabeled_unit_features(store_path: Path):
    from aloe.store import open_store

    reader = open_store(store_path).round(0)
    features = reader.features()
    mask = np.ones(len(features), dtype=bool)
    mask[reader.labeled_positions] = False
    x = features[mask]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return reader, features, x, mask


def child_faiss(store_path: Path, k: int, niter: int) -> dict:
    """``faiss.Kmeans`` alone on the selector's k-means input (not timed: reading and normalizing)."""
    import faiss

    _, _, x, _ = _unlabeled_unit_features(store_path)
    started = time.perf_counter()
    kmeans = faiss.Kmeans(x.shape[1], k, niter=niter, seed=0, max_points_per_centroid=math.ceil(len(x) / k) + 1,
                          min_points_per_centroid=1, verbose=False)
    kmeans.train(x)
    trained = time.perf_counter()
    kmeans.index.search(x, 1)
    return {"train_s": trained - started, "train_assign_s": time.perf_counter() - started}


def child_sklearn(store_path: Path, budget: int, niter: int) -> dict:
    """The ALOE rule in plain numpy + scikit-learn, store read included."""
    from sklearn.cluster import KMeans

    started = time.perf_counter()
    reader, features, x, mask = _unlabeled_unit_features(store_path)
    logits = reader.logits()
    z = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(z)
    probs /= probs.sum(axis=1, keepdims=True)
    scores = -(np.abs(features).sum(axis=1) * np.abs(probs - 1.0 / probs.shape[1]).sum(axis=1))
    tau = np.percentile(scores[reader.labeled_positions], 95)
    k = min(len(x), 2 * max(budget, probs.shape[1]))
    labels = KMeans(k, init="random", n_init=1, max_iter=niter, tol=0.0, algorithm="lloyd",
                    random_state=0).fit(x).labels_
    positions = np.flatnonzero(mask)
    o = scores[mask]
    flagged = o > tau
    clusters = []
    for c in range(k):
        members = labels == c
        if members.any():
            best = positions[members][np.argmax(o[members])]
            clusters.append((-flagged[members].mean(), -o[members].mean(), c, best))
    batch = [int(row[3]) for row in sorted(clusters)[:budget]]
    return {"wall_s": time.perf_counter() - started, "peak_rss_mib": _peak_mib(), "batch": batch}


def _child(kind: str, store_path: Path, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--child", kind, "--store", str(store_path),
               "--budget", str(args.budget), "--niter", str(args.niter), "--k", str(args.k)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_size(n: int, args: argparse.Namespace, workdir: Path) -> dict:
    """Build the store for ``n`` items and run the three measurements."""
    from bench_pool import build_round

    store_path = workdir / f"bench-{n}.zarr"
    build_s = build_round(store_path, n, args.dim, args.classes)
    load = os.getloadavg()[0]
    aloe = _child("aloe", store_path, args)
    faiss_alone = _child("faiss", store_path, args)
    plain = _child("sklearn", store_path, args) if not args.skip_sklearn else None
    features_mib = n * args.dim * 4 / 2**20
    row = {
        "n": n,
        "dim": args.dim,
        "classes": args.classes,
        "budget": args.budget,
        "k": aloe["k"],
        "niter": args.niter,
        "build_store_s": round(build_s, 2),
        "aloe_total_s": round(aloe["wall_s"], 3),
        "aloe_steps_s": {step: round(s, 3) for step, s in aloe["timings"].items()},
        "faiss_train_s": round(faiss_alone["train_s"], 3),
        "faiss_train_assign_s": round(faiss_alone["train_assign_s"], 3),
        "ratio_vs_faiss_train": round(aloe["wall_s"] / faiss_alone["train_s"], 3),
        "ratio_vs_faiss_train_assign": round(aloe["wall_s"] / faiss_alone["train_assign_s"], 3),
        "features_float32_mib": round(features_mib, 1),
        "aloe_peak_rss_over_start_mib": round(aloe["peak_rss_mib"] - aloe["rss_before_mib"], 1),
        "aloe_peak_over_features": round((aloe["peak_rss_mib"] - aloe["rss_before_mib"]) / features_mib, 2),
        "load_avg_1min_before_after": [round(load, 2), round(os.getloadavg()[0], 2)],
        "notes": aloe["notes"],
    }
    if plain is not None:
        row["sklearn_total_s"] = round(plain["wall_s"], 3)
        row["sklearn_over_aloe"] = round(plain["wall_s"] / aloe["wall_s"], 3)
        row["batch_overlap_with_sklearn"] = round(len(set(aloe["batch"]) & set(plain["batch"])) / args.budget, 3)
    return row


def write_markdown(path: Path, rows: list[dict], machine: dict) -> None:
    """A small table of the results."""
    lines = [
        "# Selector benchmark (CPU)",
        "",
        f"Machine: {machine['cpus']} CPUs ({machine['processor']}), FAISS threads {machine['faiss_threads']}, "
        f"{machine['when']}. The CPU is shared with other work: see the load averages.",
        "",
        "| N | k | ALOE total s | FAISS train s | ratio | FAISS train+assign s | ratio | sklearn rule s | "
        "sklearn / ALOE | peak RSS / features f32 | load before, after |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['n']:,} | {r['k']} | {r['aloe_total_s']} | {r['faiss_train_s']} | {r['ratio_vs_faiss_train']} | "
            f"{r['faiss_train_assign_s']} | {r['ratio_vs_faiss_train_assign']} | {r.get('sklearn_total_s', '-')} | "
            f"{r.get('sklearn_over_aloe', '-')} | {r['aloe_peak_over_features']} | {r['load_avg_1min_before_after']} |"
        )
    lines += ["", "ALOE steps (s):", ""]
    lines += [f"- N = {r['n']:,}: " + ", ".join(f"{k} {v}" for k, v in r["aloe_steps_s"].items()) for r in rows]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    """Parse arguments; run a child measurement, or the whole benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--budget", type=int, default=500)
    parser.add_argument("--niter", type=int, default=20)
    parser.add_argument("--skip-sklearn", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--dir", type=Path, default=None, help="where to build the stores [a temp dir]")
    parser.add_argument("--child", choices=["aloe", "faiss", "sklearn"], help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--k", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.k = args.k or 2 * max(args.budget, args.classes)

    if args.child:
        run = {"aloe": lambda: child_aloe(args.store, args.budget, args.niter),
               "faiss": lambda: child_faiss(args.store, args.k, args.niter),
               "sklearn": lambda: child_sklearn(args.store, args.budget, args.niter)}[args.child]
        print(json.dumps(run()))
        return

    import faiss

    machine = {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
               "faiss_threads": faiss.omp_get_max_threads(), "when": time.strftime("%Y-%m-%d %H:%M")}
    rows = []
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for n in args.sizes:
            rows.append(run_size(n, args, Path(tmp)))
            print(json.dumps(rows[-1]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.sizes == [100_000] else "-" + "-".join(str(n) for n in args.sizes)
    (args.out / f"results{suffix}.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")
    write_markdown(args.out / f"results{suffix}.md", rows, machine)


if __name__ == "__main__":
    main()
