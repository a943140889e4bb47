"""The loop's subcommands of ``aloe``: ``labels import|export-batch``, ``simulate``, ``report``, ``demo``."""

from __future__ import annotations

from pathlib import Path

import click

from aloe.errors import AloeError
from aloe.loop.batch import import_answers, read_batch
from aloe.loop.labelstudio import label_config, make_tasks, write_json
from aloe.loop.ledger import LEDGER_NAME, Ledger, ledger_path_for
from aloe.loop.manifest import image_locations

LEDGER_HELP = (
    "The run's labels ledger (an append-only id,label,round,source CSV). "
    f"Default: {LEDGER_NAME} beside --store."
)


def _ledger(ledger: Path | None, store: Path | None) -> Ledger:
    if ledger is not None:
        return Ledger(ledger)
    if store is not None:
        return Ledger(ledger_path_for(store))
    raise AloeError("say where the labels ledger is: --ledger PATH, or --store PATH to use the one beside it")


def _latest_round(store: Path) -> int:
    from aloe.store import open_store

    return int(open_store(store, mode="r").latest_round())


def import_round(ledger: Ledger, batch_ids: set[str], store: Path | None) -> int:
    """The ledger round for a batch's labels.

    A batch already partly in the ledger keeps its round; otherwise the round after the store's
    latest (the batch was selected from that round), or without a store the round after the
    ledger's last (0 for an empty ledger: the initial set).
    """
    for entry in ledger.entries():
        if entry.id in batch_ids:
            return entry.round
    if store is not None:
        return _latest_round(store) + 1
    last = ledger.last_round()
    return 0 if last is None else last + 1


@click.group("labels")
def labels_group() -> None:
    """The labels ledger: import an annotator's answers, export a batch for Label Studio.

    Each run keeps one ledger, an append-only CSV with columns id,label,round,source, by default
    ledger.csv beside the run's store. It is validated on every read and is itself a valid
    id,label file for ``aloe-embed --labels``.
    """


@labels_group.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--batch", "batch_path", required=True, type=click.Path(path_type=Path),
              help="The batch CSV from aloe-select (id,rank,cluster,ood_score,flagged).")
@click.option("--ledger", type=click.Path(path_type=Path), help=LEDGER_HELP)
@click.option("--store", type=click.Path(path_type=Path),
              help="The run's store: locates the default ledger and numbers the round.")
@click.option("--round", "round_", type=click.IntRange(min=0),
              help="Ledger round of these labels. Default: the batch's round if partly imported, "
                   "else the store's latest round + 1, else the ledger's last round + 1.")
@click.option("--source", help="Recorded in the ledger's source column. Default: FILE's name.")
def import_command(file: Path, batch_path: Path, ledger: Path | None, store: Path | None,
                   round_: int | None, source: str | None) -> None:
    """Merge an annotator's labels for the current batch into the ledger.

    FILE is an id,label CSV or Label Studio's JSON export of the tasks from ``export-batch``
    (the label is the first choice of each task's latest annotation; unannotated tasks wait for
    a later import). New class names are welcome: they join the known classes next round.

    All or nothing: empty labels, ids outside the batch, ids already labeled with a different
    label, and ids given two labels are all reported with their line (or task) numbers, and
    nothing is merged until the file is clean.
    """
    book = _ledger(ledger, store)
    batch_ids = {row["id"] for row in read_batch(batch_path)}
    t = round_ if round_ is not None else import_round(book, batch_ids, store)
    result = import_answers(book, file, batch_path, t, source)
    news = f"; new classes: {', '.join(result.new_classes)}" if result.new_classes else ""
    waiting = f"; {result.unannotated_tasks} tasks not yet annotated" if result.unannotated_tasks else ""
    click.echo(
        f"merged {result.added} labels into {book.path} (round {t}); "
        f"{result.batch_labeled}/{result.batch_size} of the batch labeled{news}{waiting}"
    )


@labels_group.command("export-batch")
@click.argument("batch_path", metavar="BATCH", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Where to write the Label Studio tasks (JSON).")
@click.option("--manifest", type=click.Path(path_type=Path),
              help="The pool's id,path manifest: each task's image is PREFIX + the item's path.")
@click.option("--prefix", default="",
              help="Prepended to the manifest path (or, without --manifest, to the id), e.g. "
                   "'/data/local-files/?d=' or 'https://images.example.org/'.")
@click.option("--label-config", "label_config_path", type=click.Path(path_type=Path),
              help="Also write a Label Studio labeling interface (XML) listing the known classes.")
@click.option("--ledger", type=click.Path(path_type=Path), help=LEDGER_HELP)
@click.option("--store", type=click.Path(path_type=Path), help="The run's store (locates the ledger).")
def export_command(batch_path: Path, out: Path, manifest: Path | None, prefix: str,
                   label_config_path: Path | None, ledger: Path | None, store: Path | None) -> None:
    """Write BATCH (the CSV from aloe-select) as Label Studio image-classification tasks.

    Import the JSON into a Label Studio project whose labeling interface is a Choices control
    named 'label' over an Image named 'image' (--label-config writes one with the classes known
    so far; add new class names there as they turn up). Export the annotations as JSON and
    bring them back with ``aloe labels import``.
    """
    rows = read_batch(batch_path)
    images = image_locations([row["id"] for row in rows], manifest, prefix)
    write_json(out, make_tasks(rows, images))
    message = f"wrote {len(rows)} Label Studio tasks to {out}"
    if label_config_path is not None:
        known = sorted(set(_ledger(ledger, store).labels().values())) if ledger or store else []
        label_config_path.parent.mkdir(parents=True, exist_ok=True)
        label_config_path.write_text(label_config(known))
        message += f" and the labeling interface ({len(known)} known classes) to {label_config_path}"
    click.echo(message)
