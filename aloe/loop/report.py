"""``aloe report``: plots and a Markdown summary of a simulation's ``metrics.csv``.

For each strategy: classes discovered and balanced accuracy against the number of labels (mean over
seeds, with a band of one standard deviation), and the labels needed to discover 50%, 90% and 100%
of the classes, with the saving against ``random``; and, seed by seed, how many more or fewer labels
each strategy needed than a reference strategy (``aloe``) to discover every class, with a bootstrap
interval, so that a difference can be told from the seeds' noise.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from aloe.errors import AloeError  # noqa: E402
from aloe.internal.folders import make_out_folder  # noqa: E402
from aloe.loop.metrics import read_metrics, stalls  # noqa: E402

FRACTIONS = (0.5, 0.9, 1.0)
SETTINGS_NAME = "simulation.json"
BASELINE = "random"
REFERENCE = "aloe"
RESAMPLES = 10_000


@dataclass(frozen=True)
class Curve:
    """One strategy's metric per round: labels, and the mean and std over seeds."""

    labels: np.ndarray
    mean: np.ndarray
    std: np.ndarray


@dataclass(frozen=True)
class Reach:
    """Labels needed to reach a number of classes, over seeds (NaN for a seed that never did),
    and the most labels each seed had."""

    per_seed: np.ndarray
    seed_max: np.ndarray

    @property
    def reached(self) -> int:
        """How many seeds reached it."""
        return int(np.isfinite(self.per_seed).sum())

    @property
    def mean(self) -> float:
        """Mean over seeds; NaN unless every seed reached it."""
        return float(self.per_seed.mean()) if self.reached == len(self.per_seed) else math.nan

    def lower_bound(self) -> float:
        """A lower bound on the mean: seeds that never got there count at the most labels they had."""
        return float(np.where(np.isfinite(self.per_seed), self.per_seed, self.seed_max).mean())


def by_run(rows: list[dict]) -> dict[str, dict[int, list[dict]]]:
    """``{strategy: {seed: rows by round}}``."""
    runs: dict[str, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        runs[row["strategy"]][row["seed"]].append(row)
    return {
        s: {seed: sorted(rs, key=lambda r: r["round"]) for seed, rs in seeds.items()}
        for s, seeds in runs.items()
    }


def curve(seeds: dict[int, list[dict]], key: str) -> Curve:
    """Mean and std of ``key`` per round over the seeds that reached that round."""
    rounds = sorted({r["round"] for rows in seeds.values() for r in rows})
    labels, means, stds = [], [], []
    for t in rounds:
        at = [r for rows in seeds.values() for r in rows if r["round"] == t]
        values = np.array([r[key] for r in at], dtype=float)
        labels.append(np.mean([r["n_labeled"] for r in at]))
        means.append(np.nanmean(values) if np.isfinite(values).any() else math.nan)
        stds.append(np.nanstd(values) if np.isfinite(values).any() else math.nan)
    return Curve(np.array(labels), np.array(means), np.array(stds))


def labels_by_seed(seeds: dict[int, list[dict]], n_classes: int) -> dict[int, float]:
    """``{seed: the fewest labels at which n_classes_discovered >= n_classes}``, NaN where never."""
    return {
        seed: float(min((r["n_labeled"] for r in rows if r["n_classes_discovered"] >= n_classes), default=math.nan))
        for seed, rows in seeds.items()
    }


def labels_to_reach(seeds: dict[int, list[dict]], n_classes: int) -> Reach:
    """Per seed, the fewest labels at which ``n_classes_discovered >= n_classes``."""
    found = list(labels_by_seed(seeds, n_classes).values())
    most = [max(r["n_labeled"] for r in rows) for rows in seeds.values()]
    return Reach(np.array(found, dtype=float), np.array(most, dtype=float))


@dataclass(frozen=True)
class PairedDifference:
    """Per-seed differences in labels between two strategies, over the seeds where both got there."""

    differences: np.ndarray
    low: float  # the 95% bootstrap interval of their mean
    high: float

    @property
    def mean(self) -> float:
        """Mean difference (negative: fewer labels than the reference)."""
        return float(self.differences.mean())


def bootstrap_interval(values: np.ndarray, level: float = 0.95, resamples: int = RESAMPLES,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values``: ``resamples`` draws with replacement
    from a generator seeded with ``seed``, so the same values always give the same interval."""
    values = np.asarray(values, dtype=float)
    means = np.random.default_rng(seed).choice(values, size=(resamples, len(values))).mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def paired_difference(seeds: dict[int, list[dict]], reference: dict[int, list[dict]],
                      n_classes: int) -> PairedDifference | None:
    """Labels ``seeds`` needed to discover ``n_classes`` minus what ``reference`` needed on the same
    seed (the same initial labels), over the seeds both ran and both got there; ``None`` with
    fewer than two such seeds."""
    mine, theirs = labels_by_seed(seeds, n_classes), labels_by_seed(reference, n_classes)
    both = sorted(s for s in mine.keys() & theirs.keys() if math.isfinite(mine[s]) and math.isfinite(theirs[s]))
    if len(both) < 2:
        return None
    differences = np.array([mine[s] - theirs[s] for s in both])
    return PairedDifference(differences, *bootstrap_interval(differences))


def read_settings(run_dir: Path) -> dict | None:
    """A simulation folder's ``simulation.json`` (``None`` when there is none); :class:`AloeError`
    when it is damaged."""
    path = Path(run_dir) / SETTINGS_NAME
    if not path.is_file():
        return None
    try:
        settings = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AloeError(f"{path} is damaged ({exc}); it records the folder's settings: "
                        "restore it, or start afresh in another folder") from None
    if not isinstance(settings, dict) or not isinstance(settings.get("n_classes"), int):
        raise AloeError(f"{path} is damaged (no n_classes); it records the folder's settings: "
                        "restore it, or start afresh in another folder")
    return settings


def pool_classes(settings: dict | None, rows: list[dict]) -> int:
    """The pool's number of classes from a simulation's settings, else the most any run discovered."""
    if settings is not None:
        return settings["n_classes"]
    return max(r["n_classes_discovered"] for r in rows)


def total_classes(run_dir: Path, rows: list[dict]) -> int:
    """:func:`pool_classes` of the simulation in ``run_dir`` (its ``simulation.json``)."""
    return pool_classes(read_settings(run_dir), rows)


def _plot(runs: dict, key: str, ylabel: str, path: Path, hline: float | None = None) -> None:
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for strategy, seeds in sorted(runs.items()):
        c = curve(seeds, key)
        (line,) = ax.plot(c.labels, c.mean, marker="o", ms=3, label=f"{strategy} ({len(seeds)} seeds)")
        ax.fill_between(c.labels, c.mean - c.std, c.mean + c.std, color=line.get_color(), alpha=0.2)
    if hline is not None:
        ax.axhline(hline, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("labels")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _cell(reach: Reach) -> str:
    seeds = len(reach.per_seed)
    if reach.reached == seeds:
        return f"{reach.mean:.0f}"
    if reach.reached == 0:
        return f"> {reach.lower_bound():.0f} (0/{seeds} seeds)"
    reached = np.nanmean(reach.per_seed)
    return f"> {reach.lower_bound():.0f} ({reach.reached}/{seeds} seeds, those at {reached:.0f})"


def _saving(reach: Reach, baseline: Reach | None) -> str:
    """``1 - labels / baseline labels``; ``>= x%`` when only the baseline fell short (a lower bound)."""
    if baseline is None or math.isnan(reach.mean):
        return "n/a"
    if math.isnan(baseline.mean):
        return f"≥ {100 * (1 - reach.mean / baseline.lower_bound()):.0f}%"
    return f"{100 * (1 - reach.mean / baseline.mean):.0f}%"


def stall_counts(seeds: dict[int, list[dict]], n_classes: int, labels: float) -> tuple[float, int]:
    """Stall rounds (no new class while some remain) up to ``labels`` labels: the mean over seeds
    of their number, and the longest stall of any seed."""
    per_seed = [stalls([r for r in rows if r["n_labeled"] <= labels], n_classes) for rows in seeds.values()]
    return float(np.mean([sum(s) for s in per_seed])), max((max(s, default=0) for s in per_seed), default=0)


def discovery_lines(runs: dict, n_classes: int) -> list[str]:
    """A heading, then per strategy the labels needed to discover every class (mean over seeds, or a
    lower bound where a seed did not get there)."""
    head = (f"labels to discover all {n_classes} classes, mean over seeds (> M: not every seed got there "
            "within its labels, M is a lower bound):")
    return [head] + [f"  {strategy} ({len(seeds)} seeds): {_cell(labels_to_reach(seeds, n_classes))}"
                     for strategy, seeds in sorted(runs.items())]


def _fmt(mean: float, std: float, digits: int) -> str:
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if math.isfinite(mean) else "n/a"


def common_labels(runs: dict) -> float:
    """The largest label count every strategy reached."""
    return min(curve(seeds, "n_labeled").labels.max() for seeds in runs.values())


def _index_at(c: Curve, labels: float) -> int:
    """The last round of ``c`` with at most ``labels`` labels."""
    return int(np.flatnonzero(c.labels <= labels)[-1])


def summary_line(runs: dict, n_classes: int) -> str:
    """Classes discovered by each strategy at the largest label count all strategies reached."""
    common = common_labels(runs)
    parts = []
    for strategy, seeds in sorted(runs.items()):
        c = curve(seeds, "n_classes_discovered")
        parts.append(f"{strategy} {c.mean[_index_at(c, common)]:.1f}/{n_classes}")
    return f"classes discovered at {common:.0f} labels: " + ", ".join(parts)


def describe_settings(settings: dict) -> str:
    """One paragraph about the pool and the run settings, from ``simulation.json``."""
    key, pool = settings.get("resume_key", {}), settings.get("pool", {})
    select, head = key.get("select", {}), key.get("head", {})
    source = pool.get("config") or pool.get("features") or "?"
    dataset = f" ({pool['dataset']})" if "dataset" in pool else ""
    return (
        f"Pool: `{source}`{dataset}, {settings.get('n_items')} items in {settings.get('n_classes')} classes; "
        f"test split: {pool.get('test_split')}, {settings.get('n_test')} items. "
        f"Budget {key.get('budget')} per round after {key.get('initial')} random initial labels, "
        f"up to {settings.get('rounds')} rounds, seeds {settings.get('seeds')}. "
        f"Selector: score {select.get('score')}, threshold {select.get('threshold')}, tpr {select.get('tpr')}, "
        f"multiplier {select.get('multiplier')}, "
        f"per cluster {select.get('per_cluster', 1)}. "
        f"Each round's head: L2 logistic regression fitted to convergence, C {head.get('C')}."
    )


def paired_lines(runs: dict, n_classes: int, reference: str = REFERENCE) -> list[str]:
    """The section comparing every strategy with ``reference`` seed by seed (empty without one)."""
    pairs = {s: paired_difference(seeds, runs[reference], n_classes)
             for s, seeds in sorted(runs.items()) if s != reference} if reference in runs else {}
    if not pairs:
        return []
    lines = [f"## Against `{reference}`, seed by seed", "",
             f"Per seed, the labels a strategy needed to discover all {n_classes} classes minus those "
             f"`{reference}` needed on the same seed (the same initial labels), over the seeds where both "
             f"did: the mean, and a 95% bootstrap interval of it ({RESAMPLES:,} resamples, seeded). "
             f"Negative: fewer labels than `{reference}`. An interval that holds 0 means these seeds cannot "
             "tell the two apart; with fewer than about 10 seeds the interval comes out too narrow, so "
             "run more seeds before trusting one that excludes 0.", "",
             "| strategy | seeds (both found every class) | mean difference | 95% interval |", "|---|---|---|---|"]
    for strategy, pair in pairs.items():
        total = len(runs[strategy].keys() & runs[reference].keys())
        if pair is None:
            lines.append(f"| {strategy} | fewer than 2 of {total} | n/a | n/a |")
        else:
            lines.append(f"| {strategy} | {len(pair.differences)} of {total} | {pair.mean:+.1f} | "
                         f"[{pair.low:+.1f}, {pair.high:+.1f}] |")
    return [*lines, ""]


def markdown(runs: dict, n_classes: int, title: str, settings: dict | None, reference: str = REFERENCE) -> str:
    """The summary: thresholds table, a table at equal labels, the seed-by-seed comparison with
    ``reference``, the plots."""
    lines = [f"# {title}", ""]
    if settings:
        lines += [describe_settings(settings), ""]
    lines += [summary_line(runs, n_classes) + ".", ""]
    lines += [f"## Labels needed to discover a share of the {n_classes} classes", "",
              "Mean over seeds. `> M (k/n seeds, those at X)`: only k seeds got there, at X labels on "
              "average; M is a lower bound on the mean, counting the others at the most labels they "
              f"had. Saving = fewer labels than `{BASELINE}` needs (`≥`: against that lower bound).", ""]
    header = "| strategy | seeds | " + " | ".join(f"{int(f * 100)}%" for f in FRACTIONS)
    header += " | " + " | ".join(f"saving at {int(f * 100)}%" for f in FRACTIONS) + " |"
    lines += [header, "|" + "---|" * (2 + 2 * len(FRACTIONS))]
    for strategy, seeds in sorted(runs.items()):
        reaches = [labels_to_reach(seeds, math.ceil(f * n_classes)) for f in FRACTIONS]
        base = (
            [labels_to_reach(runs[BASELINE], math.ceil(f * n_classes)) for f in FRACTIONS]
            if BASELINE in runs else [None] * len(FRACTIONS)
        )
        cells = [_cell(r) for r in reaches]
        cells += [_saving(r, b) for r, b in zip(reaches, base, strict=True)]
        lines.append(f"| {strategy} | {len(seeds)} | " + " | ".join(cells) + " |")
    common = common_labels(runs)
    lines += ["", f"## At {common:.0f} labels (the most every strategy reached)", "",
              "Mean ± standard deviation over seeds; select seconds: mean time per selection up to there. "
              "Stall rounds: rounds that found no new class while some remained (mean over seeds); "
              "longest stall: the most such rounds in a row, any seed.",
              "", "| strategy | classes discovered | balanced accuracy | known balanced accuracy | "
              "select seconds | stall rounds | longest stall |", "|---|---|---|---|---|---|---|"]
    for strategy, seeds in sorted(runs.items()):
        cells = []
        for key, digits in (("n_classes_discovered", 1), ("balanced_accuracy", 3), ("known_balanced_accuracy", 3)):
            c = curve(seeds, key)
            at = _index_at(c, common)
            cells.append(_fmt(c.mean[at], c.std[at], digits))
        times = [r["select_seconds"] for rs in seeds.values() for r in rs if 0 < r["n_labeled"] <= common
                 and r["round"] > 0]
        cells.append(f"{np.mean(times):.3f}" if times else "n/a")
        stall_mean, longest = stall_counts(seeds, n_classes, common)
        cells += [f"{stall_mean:.1f}", str(longest)]
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    lines += ["", *paired_lines(runs, n_classes, reference)]
    lines += ["![classes discovered](discovery.png)", "", "![balanced accuracy](accuracy.png)", ""]
    return "\n".join(lines)


def write_report(run_dir: str | Path, out: str | Path | None = None, title: str | None = None,
                 reference: str = REFERENCE) -> Path:
    """Write ``report.md``, ``discovery.png`` and ``accuracy.png``; return the Markdown's path.

    ``reference`` is the strategy the others are compared with seed by seed; it must be one of the
    simulation's strategies unless it is the default (a report without ``aloe`` has no such section).
    """
    run_dir = Path(run_dir)
    rows = read_metrics(run_dir / "metrics.csv")
    if not rows:
        raise AloeError(f"{run_dir / 'metrics.csv'}: no rounds yet")
    runs = by_run(rows)
    if reference != REFERENCE and reference not in runs:
        raise AloeError(f"no strategy {reference!r} to compare with in {run_dir / 'metrics.csv'}; "
                        f"it holds {', '.join(sorted(runs))}")
    settings = read_settings(run_dir)
    n_classes = pool_classes(settings, rows)
    out = Path(out) if out else run_dir
    make_out_folder(out)
    _plot(runs, "n_classes_discovered", "classes discovered", out / "discovery.png", n_classes)
    _plot(runs, "balanced_accuracy", "balanced accuracy (test)", out / "accuracy.png")
    report = out / "report.md"
    report.write_text(markdown(runs, n_classes, title or f"ALOE simulation: {run_dir.name}", settings, reference))
    return report
