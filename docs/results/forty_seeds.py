"""ALOE against `ood` over 40 seeds: seeds 0-19 from ``seeds-20`` (``aloe simulate``), seeds 20-39
from the in-memory loop's output in ``seeds-20-39/discovery.txt`` (``discovery.py``, which gives the
same figures as ``aloe simulate`` on the same pool, budget and seeds).

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

LATER = Path(__file__).resolve().parent / "seeds-20-39" / "discovery.txt"
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
            raise SystemExit(f"{path}: {match['pool']} {match['strategy']} left some seed short; rerun with more rounds")
        found[match["pool"], match["strategy"]] = np.array([int(n) for n in match["seeds"].split(",")])
    return found


def interval_text(differences: np.ndarray) -> str:
    """``mean [low, high]`` of per-seed differences."""
    low, high = bootstrap_interval(differences)
    return f"{differences.mean():+.1f} [{low:+.1f}, {high:+.1f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--later", type=Path, default=LATER, help="discovery.py output for the later seeds")
    args = parser.parse_args()
    later = read_discovery(args.later)
    print("| pool | ALOE, seeds 20-39 | `ood` | ALOE minus `ood` | ALOE, seeds 0-39 | `ood` | ALOE minus `ood` |")
    print("|---|---|---|---|---|---|---|")
    summed = []
    for pool in sorted({pool for pool, _ in later}):
        first = paired_labels(RESULTS / pool, "aloe", "ood")
        aloe, ood = later[pool, "aloe"], later[pool, "ood"]
        both = np.concatenate([first, np.stack([aloe, ood], axis=1)])
        summed.append(both[:, 0] - both[:, 1])
        print(f"| {pool} | {aloe.mean():.1f} | {ood.mean():.1f} | {interval_text(aloe - ood)} | "
              f"{both[:, 0].mean():.1f} | {both[:, 1].mean():.1f} | {interval_text(both[:, 0] - both[:, 1])} |")
    per_seed = np.sum(summed, axis=0)
    print(f"\nsummed over the {len(summed)} pools, per seed, ALOE minus `ood`: {interval_text(per_seed)}; "
          f"ALOE needed fewer on {int((per_seed < 0).sum())} of {len(per_seed)} seeds")


if __name__ == "__main__":
    main()
