"""``aloe-embed``: fine-tune the encoder on the labels so far and embed the pool into a store round."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import get_args

import click

from aloe.config import load_config
from aloe.embedder.config import EmbedConfig, Mode
from aloe.embedder.device import DeviceChoice
from aloe.embedder.round import RoundSummary
from aloe.internal.cli import exit_with
from aloe.internal.dist import launch

EPILOG = """\b
Examples:
  # the offline default (EfficientNet-Lite0 on a long-tailed MNIST pool, linear mode, CPU)
  aloe-embed --config configs/offline-default.yaml --store pool.zarr --labels labels.csv
  # the paper's setting on a GPU: CLIP ViT-B/32 fine-tuned end to end on CIFAR100-LT
  aloe-embed --config configs/cifar100-lt.yaml --store c100.zarr --labels labels.csv --device cuda
  # features computed elsewhere (npz with ids and features): a linear head only
  aloe-embed --from-features pool.npz --store pool.zarr --labels labels.csv

\b
The labels file is a CSV with a header 'id,label' holding every item labeled so far (a header-only
file is a cold start: round 0 with no known classes). Each run writes one immutable round: the
backbone is reset to its pretrained weights, a new linear head over the known classes is trained,
and features (float16) and logits (float32) for the whole pool are streamed into the store. A run
killed mid-pass resumes from its last complete chunk when rerun with the same arguments. Then run
aloe-select on the store to pick the next batch.

\b
Under torchrun each rank embeds a chunk-aligned share of the pool into the same round (Zarr stores),
fine-tuning runs with DistributedDataParallel, and rank 0 publishes the round:
  torchrun --standalone --nproc_per_node 4 --no-python aloe-embed --config c.yaml --store p.zarr --labels l.csv
"""


def _report(summary: RoundSummary, store: Path) -> None:
    click.echo(
        f"round {summary.t} written to {store}: {summary.n_items} items, {summary.n_labeled} labeled, "
        f"{summary.n_classes} known classes, mode {summary.mode}"
        + (f", pool pass {summary.pass_items_per_s:.0f} items/s" if summary.pass_items_per_s else "")
        + (f", resumed from row {summary.resumed_from}" if summary.resumed_from else "")
        + (f", sharded over {summary.ranks} ranks" if summary.ranks > 1 else "")
    )
    if summary.skipped:
        shown = ", ".join(f"{p}" for p in sorted(summary.skipped)[:5])
        click.echo(f"warning: {len(summary.skipped)} unreadable images skipped (positions {shown}"
                   f"{' ...' if len(summary.skipped) > 5 else ''}); listed in the round's provenance", err=True)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
               epilog=EPILOG)
@click.option("--config", "config_path", type=click.Path(path_type=Path),
              help="YAML config (configs/*.yaml): backbone, data, mode, training and pool settings.")
@click.option("--store", "store_path", required=True, type=click.Path(path_type=Path),
              help="Store to write (*.zarr directory or *.h5 file); created for the dataset's pool if absent.")
@click.option("--labels", "labels_path", required=True, type=click.Path(path_type=Path),
              help="CSV 'id,label' with every item labeled so far.")
@click.option("--round", "round_", type=click.IntRange(min=0), default=None,
              help="Round number to write; only the next one is accepted (rounds have no gaps) "
                   "[default: one past the latest complete round, 0 for a new store].")
@click.option("--mode", type=click.Choice(get_args(Mode)), default=None,
              help="finetune: reset and train backbone + head end to end (the paper). linear: frozen "
                   "backbone, cached pool features, head only (fast on a CPU). [default: from the config]")
@click.option("--device", type=click.Choice(get_args(DeviceChoice)), default=None,
              help="Where to train and embed [default: from the config, else auto = CUDA when present].")
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="Seed for fine-tuning (head init, shuffling, augmentation); the linear head needs none.")
@click.option("--from-features", "features_path", type=click.Path(path_type=Path), default=None,
              help="npz with 'ids' (N,) and 'features' (N, D) computed elsewhere: skip the backbone and "
                   "train a linear head on these features (no --config needed).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def command(config_path, store_path, labels_path, round_, mode, device, seed, features_path, quiet) -> None:
    """Embed the pool for one labeling round: train on the labels so far, write features and logits.

    Reads the labels so far, resets the configured backbone (an open_clip CLIP tower or a timm model)
    to its pretrained weights, trains a new linear head over the known classes (with the backbone in
    finetune mode, alone in linear mode) and streams the whole pool's features and logits into round
    T of the store, with the mode and every setting recorded as the round's provenance.
    """
    if features_path is not None and (config_path is not None or mode not in (None, "linear")):
        raise click.UsageError("--from-features trains a linear head only: drop --config and --mode")
    if features_path is None and config_path is None:
        raise click.UsageError("--config is required (or --from-features)")
    with launch() as comm:
        ranks = f" (sharded over {comm.world} ranks)" if comm.sharded else ""
        if features_path is not None:
            from aloe.embedder.linear_round import embed_from_features

            t = embed_from_features(features_path, labels_path, store_path, round=round_, comm=comm)
            if comm.is_root:
                click.echo(f"round {t} written to {store_path} from {features_path} (linear head){ranks}")
                _note_dtype(store_path, t)
            return
        from aloe.embedder.round import embed_round

        cfg = load_config(EmbedConfig, config_path, {"mode": mode, "device": device, "seed": seed})
        summary = embed_round(cfg, store_path, labels_path, t=round_, quiet=quiet or not comm.is_root, comm=comm)
        if comm.is_root:
            _report(summary, store_path)


def _note_dtype(store_path: Path, t: int) -> None:
    """Say so when a round's features are stored as float32 because they overflow float16."""
    from aloe.store import open_store

    reader = open_store(store_path).round(t)
    try:
        if reader.attrs.get("feature_dtype") == "float32":
            click.echo("note: the features exceed the float16 range, so they are stored as float32", err=True)
    finally:
        reader.close()


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point for ``aloe-embed``."""
    exit_with(command, argv)


if __name__ == "__main__":
    main()
