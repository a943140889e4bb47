"""``aloe labels``: import answers into the ledger, and the Label Studio exchange (files or its API)."""

from __future__ import annotations

from pathlib import Path

import click

from aloe.batchfile import read_batch
from aloe.errors import AloeError
from aloe.loop.batch import ImportResult, import_answers, merge_answers
from aloe.loop.labelstudio.client import TOKEN_VARIABLE, LabelStudio
from aloe.loop.labelstudio.images import serving_instructions
from aloe.loop.labelstudio.prepare import prepare_batch
from aloe.loop.labelstudio.sync import pull_batch, push_batch
from aloe.loop.labelstudio.tasks import label_config, write_json
from aloe.loop.ledger import LEDGER_NAME, Ledger, ledger_path_for

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


def _known_classes(ledger: Path | None, store: Path | None) -> list[str]:
    return sorted(set(_ledger(ledger, store).labels().values())) if ledger or store else []


def _report(book: Ledger, result: ImportResult) -> None:
    for note in result.notes:
        click.echo(note)
    news = f"; new classes: {', '.join(result.new_classes)}" if result.new_classes else ""
    n = result.unannotated_tasks
    waiting = f"; {n} task{'s' if n != 1 else ''} not yet annotated" if n else ""
    skipped = (f"; skipped {result.skipped_outside} answers outside the batch, already in the ledger"
               if result.skipped_outside else "")
    click.echo(
        f"merged {result.added} labels into {book.path} (round {result.round}); "
        f"{result.batch_labeled}/{result.batch_size} of the batch labeled{news}{waiting}{skipped}"
    )


def ledger_options(command):
    """``--ledger`` and ``--store``: where the run's ledger is."""
    command = click.option("--store", type=click.Path(path_type=Path),
                           help="The run's store: locates the default ledger and numbers the round.")(command)
    return click.option("--ledger", type=click.Path(path_type=Path), help=LEDGER_HELP)(command)


def image_options(command):
    """Where the batch's images come from and how Label Studio reaches them."""
    for option in reversed([
        click.option("--images", type=click.Path(path_type=Path),
                     help="Write the batch's images into this folder (PNG for array pools such as MNIST or "
                          "CIFAR, hard links or copies for file pools) for Label Studio's local files."),
        click.option("--manifest", type=click.Path(path_type=Path),
                     help="The pool's id,path manifest (an image file per item)."),
        click.option("--config", "config_path", type=click.Path(path_type=Path),
                     help="The pool's aloe-embed config (its dataset gives the images), e.g. "
                          "configs/offline-default.yaml."),
        click.option("--document-root", type=click.Path(path_type=Path),
                     help="Label Studio's LOCAL_FILES_DOCUMENT_ROOT; --images must be inside it. "
                          "Default: the parent of --images."),
        click.option("--prefix", default="",
                     help="Images hosted elsewhere: the URL before each file name (with --images), manifest "
                          "path (with --manifest) or id, e.g. 'https://images.example.org/batch-3/'."),
    ]):
        command = option(command)
    return command


def server_options(command):
    """The Label Studio server, the token and the project."""
    for option in reversed([
        click.option("--url", default="http://localhost:8080", show_default=True,
                     help="The Label Studio server."),
        click.option("--token", help=f"API token (legacy or personal access token). Default: ${TOKEN_VARIABLE}."),
        click.option("--project", "title",
                     help="The project's title. Default: 'aloe: ' + the name of the run's folder "
                          "(the ledger's folder)."),
    ]):
        command = option(command)
    return command


def _title(title: str | None, book: Ledger) -> str:
    return title if title is not None else f"aloe: {book.path.resolve().parent.name}"


@click.group("labels")
def labels_group() -> None:
    """The labels ledger and Label Studio: push a batch, pull or import its answers.

    Each run keeps one ledger, an append-only CSV with columns id,label,round,source, by default
    ledger.csv beside the run's store. It is validated on every read and is itself a valid
    id,label file for ``aloe-embed --labels``.

    With a Label Studio server: ``push`` the batch from aloe-select, label it there, ``pull`` the
    answers. Without one reachable: ``export-batch`` writes the tasks as a file to import by hand,
    and ``import`` reads the annotations exported from Label Studio (JSON, JSON-MIN or CSV) or an
    id,label CSV.
    """


@labels_group.command("import")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--batch", "batch_path", required=True, type=click.Path(path_type=Path),
              help="The batch CSV from aloe-select (id,rank,cluster,ood_score,flagged).")
@ledger_options
@click.option("--round", "round_", type=click.IntRange(min=0),
              help="Ledger round of these labels. Default: the batch's round if partly imported, "
                   "else the store's latest round + 1, else the ledger's last round + 1.")
@click.option("--source", help="Recorded in the ledger's source column. Default: FILE's name.")
def import_command(file: Path, batch_path: Path, ledger: Path | None, store: Path | None,
                   round_: int | None, source: str | None) -> None:
    """Merge an annotator's labels for the current batch into the ledger.

    FILE is an id,label CSV or Label Studio's export of the tasks from ``export-batch`` or
    ``push``, as JSON, JSON-MIN (.json) or CSV (.csv, recognized by its aloe_id column). A task's
    label is the class chosen in its latest annotation, or, when none was chosen, the new class
    name typed in the text box. A typed name, like an id,label CSV's label, is trimmed, and one
    equal to a known class up to case is that class (the import says so). Unannotated tasks wait
    for a later import. New class names are welcome: they join the known classes next round.

    All or nothing: empty labels, ids outside the batch, ids already labeled with a different
    label, and ids given two labels are all reported with their line (or task) numbers, a
    malformed task stops the import with one line naming it, and nothing is merged until the
    file is clean. Answers outside the batch that the ledger already holds with the same label
    (a project reused across rounds exports the earlier rounds' tasks too) are skipped and counted.
    """
    book = _ledger(ledger, store)
    batch_ids = {row["id"] for row in read_batch(batch_path)}
    t = round_ if round_ is not None else import_round(book, batch_ids, store)
    _report(book, import_answers(book, file, batch_path, t, source))


def refuse_to_replace(option: str, path: Path | None, overwrite: bool) -> None:
    """:class:`AloeError` when ``path`` is a folder, or a file and ``overwrite`` is not set."""
    if path is None:
        return
    if path.is_dir():
        raise AloeError(f"{option} {path} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise AloeError(f"{option} {path} exists; pass --overwrite to replace it, or choose another file name")


@labels_group.command("export-batch")
@click.argument("batch_path", metavar="BATCH", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Where to write the Label Studio tasks (JSON).")
@image_options
@click.option("--label-config", "label_config_path", type=click.Path(path_type=Path),
              help="Also write the labeling interface (XML): the known classes and a new-class text box.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out or --label-config file.")
@ledger_options
def export_command(batch_path: Path, out: Path, images: Path | None, manifest: Path | None,
                   config_path: Path | None, document_root: Path | None, prefix: str,
                   label_config_path: Path | None, overwrite: bool, ledger: Path | None,
                   store: Path | None) -> None:
    """Write BATCH (the CSV from aloe-select) as Label Studio image-classification tasks.

    For a server this machine can reach, ``aloe labels push`` does all of this for you. Otherwise
    import the JSON into a Label Studio project whose labeling interface is the one
    --label-config writes (the classes known so far as choices, and a text box named new_class
    for a class not in the list), label, export (JSON, JSON-MIN or CSV), and bring the answers
    back with ``aloe labels import``.

    With --images the images are written out and the tasks point at them as Label Studio local
    files; the command prints the two environment variables and the storage folder Label Studio
    needs to show them. An existing --out or --label-config file is kept unless --overwrite is given.
    """
    for option, path in (("--out", out), ("--label-config", label_config_path)):
        refuse_to_replace(option, path, overwrite)
    prepared = prepare_batch(batch_path, manifest=manifest, config=config_path, images=images,
                             document_root=document_root, prefix=prefix)
    write_json(out, prepared.tasks)
    click.echo(f"wrote {len(prepared.tasks)} Label Studio tasks to {out}")
    if prepared.images is not None:
        click.echo(f"wrote their images to {prepared.images}")
    if prepared.local_folder is not None:
        click.echo(serving_instructions(prepared.local_folder, prepared.document_root))
    if label_config_path is not None:
        known = _known_classes(ledger, store)
        label_config_path.parent.mkdir(parents=True, exist_ok=True)
        label_config_path.write_text(label_config(known))
        click.echo(f"wrote the labeling interface ({len(known)} known classes) to {label_config_path}")


@labels_group.command("push")
@click.argument("batch_path", metavar="BATCH", type=click.Path(path_type=Path))
@image_options
@click.option("--upload", is_flag=True,
              help="Upload the --images to the server instead of serving them as local files (for a server "
                   "that cannot see this machine's disk).")
@server_options
@ledger_options
def push_command(batch_path: Path, images: Path | None, manifest: Path | None, config_path: Path | None,
                 document_root: Path | None, prefix: str, upload: bool, url: str, token: str | None,
                 title: str | None, ledger: Path | None, store: Path | None) -> None:
    """Put BATCH (the CSV from aloe-select) into a Label Studio project, ready to label.

    Finds the project by title or creates it, sets its labeling interface (the classes in the
    ledger as choices, and a text box for a new class), connects a Local Files storage to the
    --images folder, and imports the batch's tasks that are not there yet (pushing twice adds
    nothing). The server must run with the environment variables that ``export-batch --images``
    prints (LOCAL_FILES_SERVING_ENABLED=true, LOCAL_FILES_DOCUMENT_ROOT=the document root); with
    --upload the images are uploaded instead, and with --prefix they are hosted elsewhere.

    Example: aloe labels push runs/loop/batch.csv --store runs/loop/pool.zarr
    --config configs/offline-default.yaml --images runs/loop/images/round-1
    """
    book = _ledger(ledger, store)
    client = LabelStudio(url, token)
    prepared = prepare_batch(batch_path, manifest=manifest, config=config_path, images=images,
                             document_root=document_root, prefix=prefix, upload=upload)
    project = _title(title, book)
    config = label_config(sorted(set(book.labels().values())))
    result = push_batch(client, project, prepared.tasks, config, prepared.local_folder,
                        prepared.files if upload else None)
    state = "created" if result.created else "existing"
    click.echo(f"pushed {result.imported} tasks to Label Studio project {project!r} ({state}, id "
               f"{result.project_id}; {result.storage}); {result.already_there} were already there")
    click.echo(f"label them at {client.url}/projects/{result.project_id}/data, then: aloe labels pull {batch_path}")


@labels_group.command("pull")
@click.argument("batch_path", metavar="BATCH", type=click.Path(path_type=Path))
@server_options
@ledger_options
@click.option("--round", "round_", type=click.IntRange(min=0),
              help="Ledger round of these labels (default as for import).")
@click.option("--partial", is_flag=True,
              help="Merge the finished tasks now, even though others are not annotated yet.")
def pull_command(batch_path: Path, url: str, token: str | None, title: str | None, ledger: Path | None,
                 store: Path | None, round_: int | None, partial: bool) -> None:
    """Merge the Label Studio answers to BATCH into the ledger.

    Reads the project's annotations of the batch's tasks (the class chosen, or the new class name
    typed) with the same checks as ``import``. Nothing is merged until every task of the batch is
    annotated, unless --partial; the unfinished ones are reported either way.
    """
    book = _ledger(ledger, store)
    batch_ids = {row["id"] for row in read_batch(batch_path)}
    client = LabelStudio(url, token)
    project = _title(title, book)
    pulled = pull_batch(client, project, batch_ids)
    waiting = len(pulled.unfinished)
    if waiting and not partial:
        shown = ", ".join(pulled.unfinished[:5]) + (", ..." if waiting > 5 else "")
        raise AloeError(f"{waiting} of {len(batch_ids)} batch items not yet annotated in project {project!r} "
                        f"({shown}); nothing merged: pull again when they are done, or --partial")
    t = round_ if round_ is not None else import_round(book, batch_ids, store)
    result = merge_answers(book, pulled.annotations, pulled.unfinished, batch_ids, t,
                           f"labelstudio:{pulled.project_id}")
    _report(book, result)
