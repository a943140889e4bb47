"""Benchmark: ``aloe-select`` sharded over 2 gloo ranks against 1 process, and out-of-core peak memory.

Two parts, each run in fresh processes on stores built first (``bench_pool.build_round``: N x 512
float16 in Zarr, C = 100, 1,000 labels):

- ``ranks``: the same streamed selection (torch Lloyd k-means) run by ``aloe-select`` in one process
  and by ``torchrun --standalone --nproc_per_node=2`` (gloo), alternating ``--repeats`` times; wall
  time of the whole command (start-up included) and the selection's own ``total``; the batches must be
  equal. Also the parts of the scaling model in ``docs/cluster.md``: read, score, one Lloyd
  iteration (from the 1-process run), and one all-reduce of the ``k x D`` sums and ``k`` counts over
  the 2 gloo ranks.
- ``memory``: peak resident memory (``VmHWM``) of one selection above the process's resident memory
  after imports, over the float32 size of the features: the in-memory path (FAISS), the streamed path,
  and the streamed path with ``--kmeans-sample`` at two pool sizes (its peak must not grow with N x D).
  k-means runs 2 iterations here: memory does not depend on it.

Writes ``scale.json`` and ``scale.md`` beside this file (or ``--out``).

    python bench/select/bench_scale.py                   # defaults: ranks on 100,000, memory on 1,000,000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def child_memory(store_path: str, mode: str, sample: int | None) -> dict:
    """One selection in this process; its peak memory above the resident memory after imports."""
    from aloe.selector.config import SelectConfig
    from aloe.selector.select import select_round
    from aloe.store import open_store

    store = open_store(store_path)
    before = _status_kib("VmRSS")
    settings = {"in-memory": {"stream": "never", "backend": "faiss"}, "streamed": {"stream": "always"}}[mode]
    config = SelectConfig(budget=500, niter=2, seed=0, kmeans_sample=sample, score="gradnorm", per_cluster=1,
                          **settings)
    started = time.perf_counter()
    selection = select_round(store, 0, config)
    reader = store.round(0)
    return {
        "wall_s": time.perf_counter() - started,
        "rss_after_imports_mib": before / 1024,
        "peak_mib": _status_kib("VmHWM") / 1024,
        "float32_features_mib": reader.n_items * reader.feature_dim * 4 / 2**20,
        "timings": selection.timings,
    }


def child_reduce(k: int, dim: int, repeats: int) -> None:
    """Under torchrun: seconds for one all-reduce of the k x D float64 sums and k int64 counts."""
    import torch

    from aloe.internal.dist import launch

    with launch() as comm:
        sums, counts = torch.ones((k, dim), dtype=torch.float64), torch.ones(k, dtype=torch.int64)
        comm.all_reduce(sums)
        comm.barrier()
        started = time.perf_counter()
        for _ in range(repeats):
            comm.all_reduce(sums)
            comm.all_reduce(counts)
        seconds = (time.perf_counter() - started) / repeats
        if comm.is_root:
            print(json.dumps({"reduce_s": seconds}))


def _env(threads: int | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def _run(command: list[str], env: dict) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{done.stderr[-3000:]}")
    return time.perf_counter() - started, done.stdout


def bench_ranks(root: Path, n: int, budget: int, niter: int, repeats: int) -> dict:
    """1 process against 2 gloo ranks on the same store and request."""
    from bench_pool import build_round

    from aloe.store import open_store

    store_path = root / "ranks.zarr"
    build_s = build_round(store_path, n)
    config = root / "select.yaml"
    config.write_text(f"budget: {budget}\nniter: {niter}\nseed: 0\nstream: always\nbackend: torch\n")
    select = ["-m", "aloe.selector.cli", "--store", str(store_path), "--config", str(config), "--quiet"]
    runs: dict[str, list] = {"one": [], "two": []}
    for repeat in range(repeats):
        for label in ("one", "two"):
            name = f"{label}-{repeat}"
            argv = [*select, "--out", str(root / f"{name}.csv"), "--name", name]
            if label == "one":
                wall, _ = _run([sys.executable, *argv], _env())
            else:
                launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
                wall, _ = _run([*launcher, *argv], _env(threads=1))
            attrs, arrays = open_store(store_path).read_selection(0, name)
            runs[label].append({"wall_s": wall, "timings": attrs["timings"], "batch": arrays["positions"].tolist()})
    k = open_store(store_path).read_selection(0, "one-0")[0]["k"]
    reduce_argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                   str(Path(__file__).resolve()), "--child", "reduce", "--k", str(k)]
    _, out = _run(reduce_argv, _env(threads=1))
    batches = [run["batch"] for label in runs for run in runs[label]]

    def median(label: str, key: str) -> float:
        values = sorted(run["wall_s"] if key == "wall" else run["timings"][key] for run in runs[label])
        return values[len(values) // 2]

    one = runs["one"][0]["timings"]
    return {
        "n": n, "dim": 512, "budget": budget, "k": k, "niter": niter, "repeats": repeats,
        "build_store_s": round(build_s, 2),
        "one_process_wall_s": round(median("one", "wall"), 3),
        "two_ranks_wall_s": round(median("two", "wall"), 3),
        "wall_ratio_two_over_one": round(median("two", "wall") / median("one", "wall"), 3),
        "one_process_total_s": round(median("one", "total"), 3),
        "two_ranks_total_s": round(median("two", "total"), 3),
        "total_ratio_two_over_one": round(median("two", "total") / median("one", "total"), 3),
        "same_batch": all(batch == batches[0] for batch in batches),
        "parts": {
            "read_s": round(one["read"], 4),
            "score_s": round(one["scores"], 4),
            "lloyd_iteration_s": round(one["kmeans"] / niter, 4),
            "assign_s": round(one["assign"], 4),
            "reduce_two_gloo_ranks_s": round(json.loads(out.strip().splitlines()[-1])["reduce_s"], 5),
        },
        "runs": {label: [{key: value for key, value in run.items() if key != "batch"} for run in runs[label]]
                 for label in runs},
    }


def bench_memory(root: Path, n: int, sample: int) -> dict:
    """Peak memory of the in-memory, streamed and sampled paths (sampled at n and n / 4)."""
    from bench_pool import build_round

    results = {}
    for size in (n, n // 4):
        store_path = root / f"memory-{size}.zarr"
        build_round(store_path, size)
        modes = [("in-memory", None), ("streamed", None), ("streamed", sample)] if size == n else [("streamed", sample)]
        for mode, drawn in modes:
            argv = [sys.executable, str(Path(__file__).resolve()), "--child", "memory", "--store", str(store_path),
                    "--mode", mode] + (["--child-sample", str(drawn)] if drawn else [])
            _, out = _run(argv, _env())
            result = json.loads(out.strip().splitlines()[-1])
            above = result["peak_mib"] - result["rss_after_imports_mib"]
            result["peak_above_imports_mib"] = round(above, 1)
            result["peak_over_float32_features"] = round(above / result["float32_features_mib"], 3)
            label = f"{mode}{'' if drawn is None else f' sample {drawn}'} n={size}"
            results[label] = result
    return results


def write_markdown(path: Path, result: dict) -> None:
    ranks, memory = result["ranks"], result["memory"]
    lines = [
        f"# aloe-select: 2 gloo ranks vs 1 process, and out-of-core memory ({result['date']})",
        "",
        f"CPU: {result['cpu_count']} cores; load average before {result['load_before']}, after {result['load_after']}.",
        "",
        f"## Ranks: N = {ranks['n']:,} x 512, k = {ranks['k']}, {ranks['niter']} iterations, median of "
        f"{ranks['repeats']}",
        "",
        "| | 1 process | 2 gloo ranks | ratio 2 / 1 |",
        "|---|---|---|---|",
        f"| whole command (start-up included) | {ranks['one_process_wall_s']} s | {ranks['two_ranks_wall_s']} s | "
        f"{ranks['wall_ratio_two_over_one']} |",
        f"| selection (`total`) | {ranks['one_process_total_s']} s | {ranks['two_ranks_total_s']} s | "
        f"{ranks['total_ratio_two_over_one']} |",
        "",
        f"Same batch in every run: {ranks['same_batch']}. Parts (1 process): {ranks['parts']}.",
        "",
        "## Peak memory above the resident memory after imports, over the float32 features",
        "",
        "| path | N | float32 features | peak above imports | ratio |",
        "|---|---|---|---|---|",
    ]
    for label, entry in memory.items():
        lines.append(f"| {label.rsplit(' n=', 1)[0]} | {label.rsplit('n=', 1)[1]} | "
                     f"{entry['float32_features_mib']:.0f} MiB | {entry['peak_above_imports_mib']:.0f} MiB | "
                     f"{entry['peak_over_float32_features']} |")
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    """Run both parts (or a child) and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="pool size for the ranks part")
    parser.add_argument("--budget", type=int, default=100, help="B for the ranks part (k = 2 B)")
    parser.add_argument("--niter", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--memory-n", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--child", choices=["memory", "reduce"], default=None, help=argparse.SUPPRESS)
    parser.add_argument("--store", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--k", type=int, default=200, help=argparse.SUPPRESS)
    parser.add_argument("--child-sample", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "memory":
        print(json.dumps(child_memory(args.store, args.mode, args.child_sample)))
        return
    if args.child == "reduce":
        child_reduce(args.k, 512, 20)
        return
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        ranks = bench_ranks(Path(tmp), args.n, args.budget, args.niter, args.repeats)
        memory = bench_memory(Path(tmp), args.memory_n, args.sample)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu_count": os.cpu_count(),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "ranks": ranks,
        "memory": memory,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale.json").write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(args.out / "scale.md", result)
    print((args.out / "scale.md").read_text())


if __name__ == "__main__":
    main()
