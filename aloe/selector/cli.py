"""``aloe-select``: pick the next labeling batch from a store round."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import click

from aloe.config import load_config, validate_config
from aloe.embedder.sharded import check_same_request
from aloe.internal.cli import exit_with
from aloe.internal.dist import launch
from aloe.selector.clustering import BACKENDS, FewPointsPerClusterWarning
from aloe.selector.config import SelectConfig
from aloe.selector.scores import SCORES
from aloe.selector.select import request_of, run_select, summary_lines
from aloe.selector.strategies import STRATEGIES
from aloe.store import open_store

_STRATEGY_HELP = "; ".join(f"{s.name}: {s.summary}" for s in STRATEGIES.values())


@click.command(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="""\b
Example:
  aloe-select --store pool.zarr --budget 500 --out batch.csv
  aloe-select --store pool.zarr --round 2 --budget 200 --strategy badge --out badge.csv""",
)
@click.option("--store", "store_path", required=True, type=click.Path(path_type=Path), help="The round store.")
@click.option("--round", "round_", type=int, default=None, help="Round to select on [default: latest complete].")
@click.option("--budget", type=int, default=None, help="Batch size B (required here or in --config).")
@click.option("--strategy", type=click.Choice(list(STRATEGIES)), default=None,
              help=f"Selection strategy [default: aloe]. {_STRATEGY_HELP}.")
@click.option("--score", type=click.Choice(list(SCORES)), default=None,
              help="OOD score [default: msp+knn; gradnorm is the paper's].")
@click.option("--tpr", type=float, default=None, help="Share of labeled items kept in-distribution [0.95].")
@click.option("--threshold", type=click.Choice(["out_of_fold", "in_sample"]), default=None,
              help="Labeled scores tau is the --tpr quantile of: out_of_fold (each item scored by the round's "
                   "linear head refit without it; default) or in_sample (the paper: the head fit on them).")
@click.option("--multiplier", type=int, default=None, help="k = multiplier * max(B, C) [default: 2].")
@click.option("--per-cluster", type=int, default=None,
              help="Most items one of the top B clusters gives [default: 1, the paper's rule].")
@click.option("--seed", type=int, default=None, help="Seed of k-means and sampling [default: 0].")
@click.option("--backend", type=click.Choice(BACKENDS), default=None,
              help="k-means backend [default: auto: FAISS GPU, else torch on CUDA, else FAISS CPU].")
@click.option("--stream", type=click.Choice(["auto", "always", "never"]), default=None,
              help="Stream features from the store, out of core, with the torch Lloyd k-means [default: "
                   "auto: when the in-memory FAISS path would not fit, under torchrun, or with --kmeans-sample].")
@click.option("--kmeans-sample", type=click.IntRange(min=1), default=None,
              help="Train k-means on this many seeded sample items and assign every item (recorded).")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Batch CSV to write: id, rank, cluster, ood_score, flagged.")
@click.option("--name", default=None,
              help="Name of the selection record in the store [default: <strategy>-b<B>-<hash of the request>].")
@click.option("--overwrite", is_flag=True, help="Replace a selection of the same name made with other settings.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), default=None,
              help="YAML with any of the settings above (flags win) and niter, normalize, knn_k, "
                   "max_points_per_centroid, folds.")
@click.option("--quiet", is_flag=True, help="Print nothing but errors.")
def cli(
    store_path: Path,
    round_: int | None,
    budget: int | None,
    strategy: str | None,
    score: str | None,
    tpr: float | None,
    threshold: str | None,
    multiplier: int | None,
    per_cluster: int | None,
    seed: int | None,
    backend: str | None,
    stream: str | None,
    kmeans_sample: int | None,
    out: Path,
    name: str | None,
    overwrite: bool,
    config_path: Path | None,
    quiet: bool,
) -> None:
    """Choose the next B items to label from round T of a store, and record the choice there.

    \b
    The ALOE rule (Xie et al., TMLR 2025):
      1. score every item: o = OOD score, higher = more likely an unknown class
         (msp+knn by default; knn when fewer than 2 classes are known);
      2. tau = the --tpr quantile of the labeled items' scores: in sample for msp+knn (a mix has
         no out-of-fold form), out of fold for a logit score (--threshold; the paper scores them
         in sample); o > tau flags an item OOD;
      3. k-means on the unlabeled items' L2-normalized features, k = multiplier * max(B, C);
      4. rank clusters by their share of flagged members (ties: higher top o);
      5. each of the top B clusters gives its most-OOD member (the paper's rule); with
         --per-cluster P each offers its P most-OOD members and the batch is the B most-OOD offers.
    With no labels yet the batch is a uniform random sample. Other strategies run through the same
    interface for comparison. The same --name with the same settings reuses the recorded selection.

    \b
    Large pools: --stream always (or a pool too big for memory) reads the features block by block
    and clusters with a torch Lloyd k-means; --kmeans-sample N trains on N items only. Launched by
    torchrun (aloe and ood), every rank reads and scores its share of the rows, k-means all-reduces
    its sums, and rank 0 writes the record and the CSV:
      torchrun --nproc_per_node 4 --no-python aloe-select --store pool.zarr --budget 500 --out b.csv
    """
    overrides = {
        "budget": budget,
        "strategy": strategy,
        "score": score,
        "tpr": tpr,
        "threshold": threshold,
        "multiplier": multiplier,
        "per_cluster": per_cluster,
        "seed": seed,
        "backend": backend,
        "stream": stream,
        "kmeans_sample": kmeans_sample,
    }
    if config_path is not None:
        config = load_config(SelectConfig, config_path, overrides)
    else:
        given = {key: value for key, value in overrides.items() if value is not None}
        if "budget" not in given:
            raise click.UsageError("--budget is required (or give it in --config)")
        config = validate_config(SelectConfig, given, "aloe-select")
    with warnings.catch_warnings(), launch() as comm:  # the summary's notes say it, once
        warnings.simplefilter("ignore", FewPointsPerClusterWarning)
        check_same_request(comm, store_path, {**request_of(config), "round": round_, "name": name,
                                              "overwrite": overwrite})
        store = open_store(store_path, mode="r" if comm.sharded else "a")
        outcome = run_select(store, config, out, round=round_, name=name, overwrite=overwrite, comm=comm)
    if not quiet and comm.is_root:
        for line in summary_lines(outcome):
            click.echo(line)
        click.echo(f"wrote {out}")


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point for ``aloe-select``."""
    exit_with(cli, argv)


if __name__ == "__main__":
    main()
