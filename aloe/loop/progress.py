"""Progress over a simulation's rounds (tqdm): rounds done, pool items per second, time left."""

from __future__ import annotations

import time
from collections.abc import Callable

from tqdm import tqdm


def round_progress(n_items: int, quiet: bool) -> Callable[[int], Callable[[str], Callable[[], None]]]:
    """A ``progress`` argument for :func:`aloe.loop.simulate.simulate`.

    Each round writes ``n_items`` pool rows, so the bar's postfix shows pool items per second
    next to tqdm's rounds/s and estimated time left. ``quiet`` disables it.
    """

    def start(total: int) -> Callable[[str], Callable[[], None]]:
        bar = tqdm(total=total, unit="round", desc="simulate", disable=quiet, dynamic_ncols=True)
        started = time.perf_counter()

        def describe(run: str) -> Callable[[], None]:
            bar.set_description(run)

            def tick() -> None:
                bar.update(1)
                rate = bar.n * n_items / max(time.perf_counter() - started, 1e-9)
                bar.set_postfix_str(f"{rate:,.0f} items/s")
                if bar.n >= bar.total:
                    bar.close()

            return tick

        return describe

    return start
