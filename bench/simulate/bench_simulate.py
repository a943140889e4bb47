"""Benchmark: ``aloe simulate`` against an in-memory loop of the same rule and head on the same pool.

For each size (default 2,000 and 100,000 items; long-tailed synthetic pools from
:mod:`aloe.data.synthetic`, 512-d float32 features, alpha = 0.01), both run the same rounds of one
strategy and seed, one after the other, ``--repeats`` times each in the same process:

- ``anchor``: per round, the labels so far -> class indices -> :func:`fit_linear_head` (the
  simulation's settings and seed) -> the pool's logits -> a :class:`RoundView` of in-memory arrays
  -> :func:`run_strategy` (the round's seed) -> the oracle's labels for the batch, with torch
  single-threaded as the simulation runs its rounds. Nothing is written; no test metrics.
- ``simulate``: :func:`aloe.loop.simulate.simulate` into a fresh directory: everything the command
  does after loading its pool (settings file, ledger, metrics on the test split, batch CSVs,
  selection records, progress off), i.e. ``aloe simulate`` without the interpreter start-up and the
  npz read.

The figure is ``ratio = simulate / anchor`` (the fastest repeat of each, wall clock; target <= 1.5);
``cpu_ratio`` is the same with this process's CPU time, steadier when other work shares the CPU.
Whether both chose the same batches is recorded (``same_batches``; the script exits 1 when they did
not). Writes ``results.json`` and ``results.md`` beside this file (or ``--out``); the 1-minute load
average before and after is recorded (the CPU may be shared). The first repeat of whichever runs
first also pays the process's lazy imports (torch's optimiser and compiler modules): the fastest
repeat leaves that out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from aloe.data.synthetic import make_pool
from aloe.embedder.head import fit_linear_head, head_logits
from aloe.labels import class_indices
from aloe.loop.oracle import make_oracle_pool
from aloe.loop.selection import round_seed
from aloe.loop.simulate import SimulationSettings, simulate
from aloe.loop.workers import torch_threads
from aloe.selector.strategies import run_strategy
from aloe.selector.view import RoundView

HERE = Path(__file__).resolve().parent

# size -> (classes, items of the head class, budget, rounds)
CASES = {2000: (20, 435, 10, 10), 100000: (100, 4700, 50, 3)}


def build_pool(size: int, dim: int):
    """A long-tailed pool of about ``size`` items and a balanced test split (same class centres)."""
    n_classes, n0, _, _ = CASES[size]
    pool = make_pool(n_classes=n_classes, n0=n0, alpha=0.01, dim=dim, spread=0.05, seed=0)
    test = make_pool(n_classes=n_classes, n0=20, alpha=1.0, dim=dim, spread=0.05, seed=0)
    names = np.array(pool.class_names)
    return make_oracle_pool(pool.ids, pool.features, names[pool.labels], test.features, names[test.labels],
                            description={"synthetic": {"size": size, "dim": dim}})


def anchor(pool, settings: SimulationSettings, strategy: str, seed: int) -> list[list[str]]:
    """The in-memory loop; returns each round's batch (ids in rank order)."""
    rng = np.random.default_rng(seed)
    first = rng.choice(len(pool.ids), size=settings.n_initial, replace=False)
    labels = pool.oracle(first)
    position = {item: i for i, item in enumerate(pool.ids.tolist())}
    batches = []
    for t in range(settings.rounds):
        names, classes = class_indices(labels.values())
        positions = np.array([position[item] for item in labels], dtype=np.int64)
        with torch_threads(1):
            head = fit_linear_head(pool.features[positions], classes, len(names), config=settings.head)
            logits = head_logits(head, pool.features)
            view = RoundView(ids=pool.ids, features=pool.features, logits=logits, labeled_positions=positions,
                             labeled_classes=classes, class_names=tuple(names),
                             head=settings.head.model_dump())
            selection = run_strategy(view, strategy, settings.budget, round_seed(seed, t), settings.select)
        batch = pool.oracle(selection.positions)
        batches.append(list(batch))
        labels.update(batch)
    return batches


def simulated_batches(out: Path, strategy: str, seed: int, rounds: int) -> list[list[str]]:
    """The batches a simulation chose, from its ledger."""
    from aloe.loop.ledger import Ledger

    entries = Ledger(out / strategy / f"seed-{seed}" / "ledger.csv").entries()
    return [[e.id for e in entries if e.round == t + 1] for t in range(rounds)]


def run_case(size: int, dim: int, repeats: int, strategy: str, seed: int, scratch: Path) -> dict:
    started = time.perf_counter()
    pool = build_pool(size, dim)
    _, _, budget, rounds = CASES[size]
    settings = SimulationSettings(strategies=[strategy], seeds=[seed], budget=budget, rounds=rounds)
    build_s = time.perf_counter() - started
    anchor_s, simulate_s, anchor_cpu, simulate_cpu, same = [], [], [], [], True
    for repeat in range(repeats):
        started, cpu = time.perf_counter(), time.process_time()
        expected = anchor(pool, settings, strategy, seed)
        anchor_s.append(time.perf_counter() - started)
        anchor_cpu.append(time.process_time() - cpu)
        out = scratch / f"sim-{size}-{repeat}"
        started, cpu = time.perf_counter(), time.process_time()
        simulate(pool, settings, out)
        simulate_s.append(time.perf_counter() - started)
        simulate_cpu.append(time.process_time() - cpu)
        same = same and simulated_batches(out, strategy, seed, rounds) == expected
        shutil.rmtree(out)
    best_anchor, best_simulate = min(anchor_s), min(simulate_s)
    return {
        "size": size, "n_items": len(pool.ids), "dim": dim, "n_classes": len(pool.class_names),
        "budget": budget, "rounds": rounds, "strategy": strategy, "seed": seed,
        "head": settings.head.model_dump(), "build_pool_s": build_s,
        "anchor_s": anchor_s, "simulate_s": simulate_s, "anchor_cpu_s": anchor_cpu, "simulate_cpu_s": simulate_cpu,
        "cpu_ratio": min(simulate_cpu) / min(anchor_cpu),
        "anchor_per_round_s": best_anchor / rounds, "simulate_per_round_s": best_simulate / rounds,
        "ratio": best_simulate / best_anchor, "same_batches": same,
    }


def write_markdown(path: Path, results: dict) -> None:
    lines = [
        f"# aloe simulate vs an in-memory loop ({results['when']})",
        "",
        f"Load average (1 min) before {results['load_before']:.2f}, after {results['load_after']:.2f}; "
        f"{results['cpus']} CPUs; torch {results['torch']}.",
        "",
        "| items | dim | classes | B | rounds | strategy | in-memory s/round | simulate s/round | ratio "
        "| CPU-time ratio | same batches |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for case in results["cases"]:
        lines.append(
            f"| {case['n_items']:,} | {case['dim']} | {case['n_classes']} | {case['budget']} | {case['rounds']} | "
            f"{case['strategy']} | {case['anchor_per_round_s']:.3f} | {case['simulate_per_round_s']:.3f} | "
            f"**{case['ratio']:.2f}** | {case['cpu_ratio']:.2f} | {'yes' if case['same_batches'] else 'no'} |"
        )
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=sorted(CASES), choices=sorted(CASES))
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--strategy", default="aloe")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE, help="Folder for results.json and results.md.")
    args = parser.parse_args()
    results = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_before": os.getloadavg()[0],
               "cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as scratch:
        results["cases"] = []
        for size in args.sizes:
            case = run_case(size, args.dim, args.repeats, args.strategy, args.seed, Path(scratch))
            print(json.dumps({k: v for k, v in case.items() if k != "head"}))
            results["cases"].append(case)
    results["load_after"] = os.getloadavg()[0]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(args.out / "results.md", results)
    if not all(case["same_batches"] for case in results["cases"]):
        raise SystemExit("the simulation chose other batches than the in-memory loop")


if __name__ == "__main__":
    main()
