"""Strategies run by the in-memory loop over seeds 0-19, each against ALOE's ``aloe simulate`` runs
of ``seeds-20`` on the same seeds (the loop gives the same figures as ``aloe simulate``).

Reads ``discovery.py`` output (default: ``seeds-20-others/discovery.txt``) and prints, per pool and
strategy, the labels needed to find every class, and the strategy's labels minus ALOE's per seed
with a 95% bootstrap interval; then each strategy's labels summed over the pools.

    python docs/results/against_aloe.py
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from five_seeds import RESULTS, strategy_labels  # noqa: E402
from forty_seeds import interval_text, read_discovery  # noqa: E402

OTHERS = Path(__file__).resolve().parent / "seeds-20-others" / "discovery.txt"


def aloe_labels(pool: str, n_seeds: int) -> np.ndarray:
    """ALOE's labels to find every class on seeds ``0 .. n_seeds - 1`` of ``seeds-20/pool``."""
    found = strategy_labels(RESULTS / pool)["aloe"]
    labels = np.array([found[seed] for seed in range(n_seeds)])
    if not all(math.isfinite(n) for n in labels):
        raise SystemExit(f"{pool}: ALOE left some seed short of every class")
    return labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=OTHERS, help="discovery.py output over seeds 0-19")
    args = parser.parse_args()
    found = read_discovery(args.runs)
    by_pool: dict[str, dict[str, np.ndarray]] = defaultdict(dict)
    for (pool, strategy), labels in found.items():
        by_pool[pool][strategy] = labels
    totals: dict[str, float] = defaultdict(float)
    print("| pool | strategy | labels | ALOE | strategy minus ALOE |")
    print("|---|---|---|---|---|")
    for pool, strategies in sorted(by_pool.items()):
        aloe = aloe_labels(pool, len(next(iter(strategies.values()))))
        totals["aloe"] += aloe.mean()
        for strategy, labels in sorted(strategies.items()):
            totals[strategy] += labels.mean()
            print(f"| {pool} | {strategy} | {labels.mean():.1f} | {aloe.mean():.1f} | "
                  f"{interval_text(labels - aloe)} |")
    print("\nsummed over the pools: " + ", ".join(f"{s} {n:.1f}" for s, n in sorted(totals.items())))


if __name__ == "__main__":
    main()
