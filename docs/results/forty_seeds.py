"""ALOE against `ood` over 40 seeds: seeds 0-19 from ``seeds-20`` (``aloe simulate``), seeds 20-39
from ``seeds-20-39``: the in-memory loop's output in ``discovery.txt`` (``discovery.py``, which gives
the same figures as ``aloe simulate`` on the same pool, budget and seeds), and ``aloe simulate``
runs in its subfolders (the offline default's pool, which has no pool file for the loop).

Per pool it prints the labels each needed to find every class over seeds 20-39 and over all 40,
with the per-seed difference and its 95% bootstrap interval; then, per seed, the difference summed
over the pools, with its interval.

    python docs/results/forty_seeds.py
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from aloe.loop.report import bootstrap_interval  # noqa: E402
from five_seeds import RESULTS, paired_labels  # noqa: E402

LATER = Path(__file__).resolve().parent / "seeds-20-39"
LINE = re.compile(r"(?P<pool>\S+) (?P<strategy>\w+): (?P<short>> )?[\d.]+ \[(?P<seeds>[\d,]+)\]")


def read_discovery(path: Path) -> dict[tuple[str, str], np.ndarray]:
    """``{(pool, strategy): labels per seed}`` from ``discovery.py``'s output; a strategy that left
    some seed short of every class is an error (its figures would be lower bounds)."""
    found = {}
    for line in path.read_text().splitlines():
        match = LINE.fullmatch(line.strip())
        if match is None:
            continue
        if match["short"]:
            raise SystemExit(f"{path}: {match['pool']} {match['strategy']} left some seed short; "
                             "rerun with more rounds")
        found[match["pool"], match["strategy"]] = np.array([int(n) for n in match["seeds"].split(",")])
    return found


def later_seeds(folder: Path) -> dict[str, np.ndarray]:
    """``{pool: (seeds, 2) labels of aloe and ood}`` for seeds 20-39: ``discovery.txt`` and every
    subfolder holding an ``aloe simulate`` run."""
    found = read_discovery(folder / "discovery.txt")
    pools = {pool: np.stack([found[pool, "aloe"], found[pool, "ood"]], axis=1) for pool, _ in found}
    for run in sorted(folder.iterdir()):
        if (run / "metrics.csv").is_file():
            pools[run.name] = paired_labels(run, "aloe", "ood")
    return pools


def interval_text(differences: np.ndarray) -> str:
    """``mean [low, high]`` of per-seed differences."""
    low, high = bootstrap_interval(differences)
    return f"{differences.mean():+.1f} [{low:+.1f}, {high:+.1f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--later", type=Path, default=LATER, help="folder of the later seeds' results")
    args = parser.parse_args()
    later = later_seeds(args.later)
    print("| pool | ALOE, seeds 20-39 | `ood` | ALOE minus `ood` | ALOE, seeds 0-39 | `ood` | ALOE minus `ood` |")
    print("|---|---|---|---|---|---|---|")
    summed = []
    for pool, labels in sorted(later.items()):
        aloe, ood = labels[:, 0], labels[:, 1]
        both = np.concatenate([paired_labels(RESULTS / pool, "aloe", "ood"), labels])
        summed.append(both[:, 0] - both[:, 1])
        print(f"| {pool} | {aloe.mean():.1f} | {ood.mean():.1f} | {interval_text(aloe - ood)} | "
              f"{both[:, 0].mean():.1f} | {both[:, 1].mean():.1f} | {interval_text(both[:, 0] - both[:, 1])} |")
    per_seed = np.sum(summed, axis=0)
    print(f"\nsummed over the {len(summed)} pools, per seed, ALOE minus `ood`: {interval_text(per_seed)}; "
          f"ALOE needed fewer on {int((per_seed < 0).sum())} of {len(per_seed)} seeds")


if __name__ == "__main__":
    main()
