"""``aloe store ...``: inspect a store, and drop damaged rounds."""

from __future__ import annotations

import json
from typing import Any

import click

from aloe.errors import AloeError
from aloe.store.check import check_store
from aloe.store.drop import drop_rounds
from aloe.store.schema import ROUNDS, round_name
from aloe.store.store import Store, open_store


def _size(n_bytes: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n_bytes < 1024 or unit == "GiB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    return ""


def store_summary(store: Store) -> dict[str, Any]:
    """Everything ``aloe store info`` shows, as a JSON-ready dict; a round that cannot be opened is
    listed with ``damaged`` (the error) in place of its shapes."""
    rounds = []
    for t in store.rounds():
        try:
            reader = store.round(t)
        except AloeError as exc:
            rounds.append({"round": t, "damaged": str(exc), "bytes": store.disk_bytes(ROUNDS, round_name(t)),
                           "selections": store.selections(t)})
            continue
        try:
            rounds.append(
                {
                    "round": t,
                    "mode": reader.mode,
                    "n_classes": reader.n_classes,
                    "n_labeled": int(len(reader.labeled_positions)),
                    "features": {"shape": [reader.n_items, reader.feature_dim],
                                 "dtype": reader.attrs.get("feature_dtype")},
                    "logits": {"shape": [reader.n_items, reader.n_classes], "dtype": "float32"},
                    "bytes": store.disk_bytes(ROUNDS, round_name(t)),
                    "selections": store.selections(t),
                }
            )
        finally:
            reader.close()
    return {
        "path": str(store.path),
        "backend": store.backend.name,
        "schema_version": store.schema_version,
        "n_items": store.n_items,
        "fingerprint": store.fingerprint,
        "meta": store.meta,
        "rounds": rounds,
        "incomplete_rounds": store.incomplete_rounds(),
        "incomplete_caches": store.incomplete_caches(),
        "bytes": store.disk_bytes(),
    }


def _print_summary(info: dict[str, Any]) -> None:
    click.echo(f"store     {info['path']} ({info['backend']}, schema {info['schema_version']}, "
               f"{_size(info['bytes'])} on disk)")
    click.echo(f"pool      {info['n_items']} items, fingerprint {info['fingerprint']}")
    if not info["rounds"]:
        click.echo("rounds    none yet")
    for r in info["rounds"]:
        if "damaged" in r:
            click.echo(f"round {r['round']:<3} DAMAGED ({_size(r['bytes'])}; see the error below)")
            click.echo(f"          selections: {', '.join(r['selections']) or 'none'}")
            continue
        feats, logits = r["features"], r["logits"]
        click.echo(
            f"round {r['round']:<3} mode={r['mode']} classes={r['n_classes']} labeled={r['n_labeled']} "
            f"features {feats['shape'][0]}x{feats['shape'][1]} {feats['dtype']}, "
            f"logits {logits['shape'][0]}x{logits['shape'][1]} {logits['dtype']}, {_size(r['bytes'])}"
        )
        click.echo(f"          selections: {', '.join(r['selections']) or 'none'}")
    for t in info["incomplete_rounds"]:
        click.echo(f"round {t:<3} INCOMPLETE (a writer stopped mid-round; rerun aloe-embed to resume it)")
    for key in info["incomplete_caches"]:
        click.echo(f"cache {key} INCOMPLETE (a feature import stopped mid-way; rerun aloe-embed to resume it)")


@click.group("store")
def store_group() -> None:
    """Inspect and repair round stores (Zarr directories *.zarr or HDF5 files *.h5)."""


@store_group.command("info")
@click.argument("path", type=click.Path(path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def info_command(path: str, as_json: bool) -> None:
    """Show a store's pool size, rounds (mode, classes, labeled count, shapes, dtypes, bytes on
    disk), selections per round, and any incomplete round.

    \b
    A round that cannot be opened is listed as DAMAGED, with one ``error:`` line naming it and the way
    out (``aloe store drop``), and the exit code is 2.

    \b
    Example (the store ``aloe simulate --out runs/sim --keep-stores`` keeps for ALOE's seed 0):
      aloe store info runs/sim/aloe/seed-0/store.zarr
    """
    info = store_summary(open_store(path, "r"))
    if as_json:
        click.echo(json.dumps(info, indent=2))
    else:
        _print_summary(info)
    damaged = [r["damaged"] for r in info["rounds"] if "damaged" in r]
    if damaged:
        raise StoreProblems(damaged)


class StoreProblems(click.ClickException):
    """What ``aloe store check`` found: one ``error:`` line each on stderr, exit code 2."""

    exit_code = 2

    def __init__(self, problems: list[str]) -> None:
        super().__init__(f"{len(problems)} problems")
        self.problems = problems

    def show(self, file: Any = None) -> None:
        for line in self.problems:
            click.echo(f"error: {line}", err=True)


@store_group.command("check")
@click.argument("path", type=click.Path(path_type=str))
def check_command(path: str) -> None:
    """Read every published node of a store back in full (rounds, selections, feature caches) and
    check shapes, dtypes, every chunk's presence and checksum, and the pool's fingerprint.

    Prints one line per problem and exits 2 when there is any; exits 0 on a sound store. Incomplete
    rounds or caches (a writer that stopped) are not problems: the next run resumes them.

    \b
    Example (the feature cache ``aloe demo`` writes; the demo keeps no round stores):
      aloe store check runs/demo/features.zarr
    """
    problems, checked = check_store(path)
    if problems:
        raise StoreProblems(problems)
    click.echo(f"ok: {len(checked)} nodes read back in full ({', '.join(checked) or 'no rounds yet'})")


@store_group.command("drop")
@click.argument("path", type=click.Path(path_type=str))
@click.option("--round", "first", type=click.IntRange(min=0), required=True,
              help="The first round to remove; every later round goes with it.")
@click.option("--force", is_flag=True, help="Also drop rounds that are sound (they are lost with their selections).")
def drop_command(path: str, first: int, force: bool) -> None:
    """Remove round T and every later round (their selections and any incomplete round included), so
    aloe-embed can write round T again: the way out of a damaged round.

    Refuses, removing nothing, when one of those rounds is sound, unless --force is given. Prints one
    line per round removed. Run it while no other aloe command uses the store.

    \b
    Example (round 1 is damaged; write it again from the same labels):
      aloe store drop runs/loop/pool.zarr --round 1
      aloe-embed --config configs/offline-default.yaml --store runs/loop/pool.zarr --labels runs/loop/ledger.csv
    """
    for line in drop_rounds(path, first, force):
        click.echo(line)
