"""How much can a five-seed mean tell two strategies apart? Resample it from the twenty seeds.

For each pool of ``docs/results/seeds-20``, it draws 5 of the seeds where both strategies found
every class, without replacement, many times. It prints how often the first strategy's mean number
of labels was at or below the second's, per pool and on every pool at once (the same draws).

    python docs/results/five_seeds.py                       # aloe against ood, the real pools
    python docs/results/five_seeds.py --strategies aloe,random --pools synthetic-lt20
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from aloe.loop.metrics import read_metrics  # noqa: E402
from aloe.loop.report import by_run, labels_by_seed, total_classes  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "seeds-20"
REAL_POOLS = (
    "python-docs-lt", "python-libs-lt", "python-libs-lt48", "mnist-lt-0.01", "mnist-lt-0.005", "mnist-lt-pixels",
    "mnist-lt-0.005-pixels", "digits-lt", "digits-lt-pixels", "offline-default",
)


def strategy_labels(run_dir: Path) -> dict[str, dict[int, float]]:
    """``{strategy: {seed: labels it needed to find every class}}`` (NaN where it never did) of the
    simulation in ``run_dir``."""
    rows = read_metrics(run_dir / "metrics.csv")
    n_classes = total_classes(run_dir, rows)
    return {strategy: labels_by_seed(seeds, n_classes) for strategy, seeds in by_run(rows).items()}


def paired_labels(run_dir: Path, first: str, second: str) -> np.ndarray:
    """``(seeds, 2)``: labels each strategy needed to find every class, on the seeds where both did."""
    found = strategy_labels(run_dir)
    missing = [name for name in (first, second) if name not in found]
    if missing:
        raise SystemExit(f"error: {run_dir} holds no {' or '.join(missing)}; it holds {', '.join(sorted(found))}")
    a, b = found[first], found[second]
    seeds = sorted(s for s in a.keys() & b.keys() if math.isfinite(a[s]) and math.isfinite(b[s]))
    return np.array([[a[s], b[s]] for s in seeds])


def chance_at_or_below(labels: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Per draw (rows of seed indices), whether the first column's mean is at or below the second's."""
    picked = labels[draws]
    return picked[..., 0].mean(axis=1) <= picked[..., 1].mean(axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategies", default="aloe,ood", help="FIRST,SECOND")
    parser.add_argument("--pools", default=",".join(REAL_POOLS))
    parser.add_argument("--seeds", type=int, default=5, help="seeds per draw")
    parser.add_argument("--draws", type=int, default=20_000)
    args = parser.parse_args()
    first, second = args.strategies.split(",")
    rng = np.random.default_rng(0)
    every = np.ones(args.draws, dtype=bool)
    for pool in args.pools.split(","):
        labels = paired_labels(RESULTS / pool, first, second)
        if len(labels) < args.seeds:
            raise SystemExit(f"error: {pool}: both strategies found every class on {len(labels)} seeds, "
                             f"fewer than the {args.seeds} a draw takes")
        draws = np.argsort(rng.random((args.draws, len(labels))), axis=1)[:, : args.seeds]
        ok = chance_at_or_below(labels, draws)
        every &= ok
        print(f"{pool}: {len(labels)} seeds, {first} minus {second} {np.mean(labels[:, 0] - labels[:, 1]):+.1f} "
              f"labels; {first} at or below {second} in {ok.mean():.2f} of the draws of {args.seeds} seeds")
    print(f"every pool at once: {every.mean():.3f}")


if __name__ == "__main__":
    main()
