"""Regenerate the evidence in docs/results: every evaluation pool, every strategy, five seeds.

For each pool (the real ones of ``aloe pools list`` and three synthetic Gaussian mixtures) this runs
``aloe simulate`` with the strategies aloe, random, ood, kmeans, coreset, badge and entropy, then
``aloe report`` into ``docs/results/POOL/`` (with the metrics.csv and simulation.json it read), and
rewrites the tables of ``docs/results/README.md`` between its ``evidence`` markers. Runs go under
``runs/evidence`` and are resumed when the command is run again.

    python docs/results/evidence.py                       # everything (hours on 2 CPU cores)
    python docs/results/evidence.py --pools digits-lt                 # one pool of the main tables again
    python docs/results/evidence.py --pools digits-lt --seeds 0,1 --tag try   # a part, into docs/results/try
    python docs/results/evidence.py --strategies aloe,random --tag before   # the "before" table
    python docs/results/evidence.py --strategies aloe,ood,kmeans,random --seeds $(seq -s, 0 19) --tag seeds-20
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from aloe.cli import cli  # noqa: E402
from aloe.data.pools import POOLS  # noqa: E402
from aloe.data.synthetic import make_pool  # noqa: E402
from aloe.internal.cli import run_cli  # noqa: E402
from aloe.loop.metrics import read_metrics, write_metrics  # noqa: E402
from aloe.loop.pools import build_pool  # noqa: E402
from aloe.loop.report import (  # noqa: E402
    FRACTIONS,
    by_run,
    common_labels,
    labels_to_reach,
    stall_counts,
    total_classes,
)

DOCS = ROOT / "docs" / "results"
STRATEGIES = ("aloe", "random", "ood", "kmeans", "coreset", "badge", "entropy")
DEFAULT_SEEDS = "0,1,2,3,4"  # the main tables' seeds


@dataclass(frozen=True)
class Run:
    """One pool of the evidence: where its npz comes from and how long the simulation runs."""

    name: str
    budget: int
    rounds: int
    about: str
    synthetic: dict | None = None  # make_pool arguments; None for a registered real pool
    config: str | None = None  # an aloe-embed config (linear mode) instead of an npz


RUNS = [
    Run("python-docs-lt", 10, 30, "stdlib docstrings by package, 20 classes, MiniLM"),
    Run("mnist-lt-0.01", 10, 15, "MNIST-LT alpha 0.01, EfficientNet-Lite0"),
    Run("digits-lt-pixels", 5, 20, "scikit-learn digits LT alpha 0.02, raw pixels"),
    Run("digits-lt", 5, 20, "scikit-learn digits LT alpha 0.02, EfficientNet-Lite0"),
    Run("mnist-lt-0.005", 10, 15, "MNIST-LT alpha 0.005, EfficientNet-Lite0"),
    Run("mnist-lt-pixels", 10, 15, "MNIST-LT alpha 0.01, raw pixels"),
    Run("python-libs-lt", 10, 30, "docstrings of 20 library modules (torch, numpy, zarr, ...), MiniLM"),
    Run("mnist-lt-0.005-pixels", 10, 20, "MNIST-LT alpha 0.005, raw pixels"),
    Run("python-libs-lt48", 20, 25, "docstrings of 48 library modules (many classes), MiniLM"),
    Run("offline-default", 10, 15, "the offline default (aloe demo): MNIST-LT alpha 0.01, EfficientNet-Lite0",
        config="configs/offline-default.yaml"),
    Run("synthetic-lt20", 10, 10, "synthetic, 20 classes, alpha 0.05, well separated",
        dict(n_classes=20, n0=200, alpha=0.05, dim=64, spread=0.1, seed=1)),
    Run("synthetic-lt50", 20, 12, "synthetic, 50 classes, alpha 0.01, well separated",
        dict(n_classes=50, n0=300, alpha=0.01, dim=64, spread=0.1, seed=0)),
    Run("synthetic-lt50-overlap", 20, 15, "synthetic, 50 classes, alpha 0.01, overlapping (spread 0.25)",
        dict(n_classes=50, n0=300, alpha=0.01, dim=64, spread=0.25, seed=0)),
]


def pool_args(run: Run, directory: Path) -> list[str]:
    """The simulate options naming the run's pool, building (or reusing) its npz first."""
    if run.config is not None:
        return ["--config", run.config]
    path = directory / f"{run.name}.npz"
    if run.synthetic is None:
        build_pool(POOLS[run.name], path, quiet=True)
    elif not path.is_file():
        p = make_pool(**run.synthetic)
        np.savez(path, ids=p.ids, features=p.features, labels=p.labels, classes=np.array(p.class_names))
    return ["--features", str(path)]


def simulate(run: Run, pool: list[str], out: Path, strategy: str, seeds: str, jobs: int,
             options: list[str]) -> None:
    """``aloe simulate`` of one strategy into ``out`` with extra ``options`` (``--jobs`` where this
    version has it)."""
    args = ["simulate", *pool, "--out", str(out), "--budget", str(run.budget), "--rounds", str(run.rounds),
            "--seeds", seeds, "--strategy", strategy, "--quiet", *options]
    if "jobs" in {p.name for p in cli.commands["simulate"].params}:
        args += ["--jobs", str(jobs)]
    if run_cli(cli, args) != 0:
        raise SystemExit(f"simulate failed for {run.name}, {strategy}")


def publish(run: Run, parts: list[Path], docs: Path, title: str) -> None:
    """Merge the strategies' metrics (settings from the first) into ``docs`` and report there."""
    docs.mkdir(parents=True, exist_ok=True)
    write_metrics(docs / "metrics.csv", [row for part in parts for row in read_metrics(part / "metrics.csv")])
    shutil.copyfile(parts[0] / "simulation.json", docs / "simulation.json")
    if run_cli(cli, ["report", str(docs), "--title", title]) != 0:
        raise SystemExit(f"report failed for {run.name}")


def _cell(seeds: dict, n: int) -> str:
    reach = labels_to_reach(seeds, n)
    if reach.reached == len(reach.per_seed):
        return f"{reach.mean:.0f}"
    return f"> {reach.lower_bound():.0f}"


def table(docs_root: Path, runs: list[Run], strategies: list[str], link_prefix: str) -> list[str]:
    """Markdown tables: labels to 50/90/100% of the classes per strategy, and the stall rounds."""
    done = [(run, docs_root / run.name) for run in runs if (docs_root / run.name / "metrics.csv").is_file()]
    results = []
    for run, folder in done:
        rows = read_metrics(folder / "metrics.csv")
        results.append((run, f"[{run.name}]({link_prefix}{run.name}/report.md)", by_run(rows),
                        total_classes(folder, rows)))
    heading = "| pool | classes | budget | " + " | ".join(strategies) + " |"
    rule = "|---|---|---|" + "---|" * len(strategies)
    lines = []
    for fraction in FRACTIONS:
        lines += ["", f"Labels to discover {fraction:.0%} of the classes (mean over the seeds; `> M`: not every "
                  "seed got there, M is a lower bound):", "", heading, rule]
        for run, link, by, n in results:
            cells = [_cell(by[s], math.ceil(fraction * n)) if s in by else "" for s in strategies]
            lines.append(f"| {link} | {n} | {run.budget} | " + " | ".join(cells) + " |")
    lines += ["", "Stall rounds: rounds that found no new class while some remained, up to the labels every "
              "strategy had (mean over the seeds; in brackets the longest stall of any seed):", "",
              "| pool | labels | " + " | ".join(strategies) + " |", "|---|---|" + "---|" * len(strategies)]
    for run, link, by, n in results:
        common = common_labels(by)
        cells = []
        for s in strategies:
            mean, longest = stall_counts(by[s], n, common) if s in by else (math.nan, 0)
            cells.append(f"{mean:.1f} ({longest})" if s in by else "")
        lines.append(f"| {link} | {common:.0f} | " + " | ".join(cells) + " |")
    return lines


def rewrite_readme(marker: str, body: list[str]) -> None:
    """Replace the README's text between ``<!-- evidence:MARKER:start/end -->``."""
    readme = DOCS / "README.md"
    text = readme.read_text()
    start, end = f"<!-- evidence:{marker}:start -->", f"<!-- evidence:{marker}:end -->"
    if start not in text:
        text += f"\n{start}\n{end}\n"
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1]
    readme.write_text(head + start + "\n" + "\n".join(body).strip("\n") + "\n" + end + tail)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pools", default=",".join(r.name for r in RUNS), help="comma-separated pool names")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--seeds", default=DEFAULT_SEEDS)
    parser.add_argument("--jobs", type=int, default=2, help="simulate --jobs, where available")
    parser.add_argument("--tag", default="", help="a sub-folder of docs/results and runs/evidence (e.g. before)")
    parser.add_argument("--runs", type=Path, default=Path("runs") / "evidence")
    parser.add_argument("--refresh", default="", help="comma-separated strategies to rerun from scratch "
                        "(after a change to their rule)")
    parser.add_argument("--simulate-option", action="append", default=[],
                        help="an extra aloe simulate argument, repeatable: --simulate-option=--per-cluster "
                             "--simulate-option=1 (with a --tag, as the runs differ)")
    args = parser.parse_args()
    os.chdir(ROOT)  # paths in the reports are relative to the repository
    known = {r.name: r for r in RUNS}
    names = args.pools.split(",")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"error: unknown pool(s) {unknown}; known: {', '.join(known)}")
    strategies = args.strategies.split(",")
    if not args.tag and (args.seeds != DEFAULT_SEEDS or strategies != list(STRATEGIES)):
        raise SystemExit("error: other seeds or strategies than the main tables' need --tag NAME (results go to "
                         "docs/results/NAME); without it they would replace the committed five-seed evidence")
    runs_root = args.runs / args.tag if args.tag else args.runs
    docs_root = DOCS / args.tag if args.tag else DOCS
    pools_dir = args.runs / "pools"
    pools_dir.mkdir(parents=True, exist_ok=True)
    prefix = f"{args.tag}/" if args.tag else ""
    shown = [s for s in STRATEGIES if s in strategies] if args.tag else list(STRATEGIES)
    for name in names:
        run = known[name]
        started = time.perf_counter()
        pool = pool_args(run, pools_dir)
        parts = [runs_root / run.name / strategy for strategy in strategies]
        for strategy, out in zip(strategies, parts, strict=True):
            if strategy in args.refresh.split(",") and out.exists():
                shutil.rmtree(out)
            simulate(run, pool, out, strategy, args.seeds, args.jobs, args.simulate_option)
        title = f"{run.about}" + (f" ({args.tag})" if args.tag else "")
        # every strategy run so far for this pool, so one rerun (--refresh) joins the others
        done = [runs_root / run.name / s for s in STRATEGIES if (runs_root / run.name / s / "metrics.csv").is_file()]
        publish(run, done, docs_root / run.name, title)
        print(f"{run.name}: {time.perf_counter() - started:.0f} s", flush=True)
        rewrite_readme(args.tag or "main", table(docs_root, RUNS, shown, prefix))


if __name__ == "__main__":
    main()
