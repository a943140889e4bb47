"""The simulation's selection step: ``aloe-select``'s Python API on a run's store round."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from aloe.selector.clustering import FewPointsPerClusterWarning
from aloe.selector.config import SelectConfig, SelectParams
from aloe.selector.select import run_select


def round_seed(seed: int, t: int) -> int:
    """The selector's seed in round ``t`` of a run seeded ``seed`` (distinct per round, reproducible)."""
    return int(np.random.SeedSequence([seed, t]).generate_state(1)[0] >> 1)


def select_batch(
    store_path: Path, t: int, strategy: str, budget: int, seed: int, params: SelectParams, batch_csv: Path
) -> tuple[list[str], float]:
    """Select on round ``t``, record it in the store, write ``batch_csv``; the ids and the seconds.

    A selection recorded earlier with the same request (an interrupted run) is reused, not rerun.
    k-means's warning about few points per cluster (expected on small pools) is not shown.
    """
    config = SelectConfig(strategy=strategy, budget=budget, seed=round_seed(seed, t), **params.model_dump())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewPointsPerClusterWarning)
        outcome = run_select(store_path, config, batch_csv, round=t)
    return [str(i) for i in outcome.arrays["chosen_ids"]], float(outcome.attrs["timings"]["total"])
