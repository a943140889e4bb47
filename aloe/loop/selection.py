"""The simulation's selection seeds: one per run and round."""

from __future__ import annotations

import numpy as np


def round_seed(seed: int, t: int) -> int:
    """The selector's seed in round ``t`` of a run seeded ``seed`` (distinct per round, reproducible)."""
    return int(np.random.SeedSequence([seed, t]).generate_state(1)[0] >> 1)
