"""``aloe pools list|build``: the named real-data evaluation pools, built offline into npz files."""

from __future__ import annotations

from pathlib import Path

import click

from aloe.data.pools import POOLS, get_spec
from aloe.errors import AloeError
from aloe.loop.pools import DEFAULT_DIR, build_pool, default_path


@click.group("pools")
def pools_group() -> None:
    """Real long-tailed evaluation pools that build offline (no download).

    Each pool is real data made long-tailed with a fixed seed, embedded once, with a balanced test
    split from the items the long tail leaves unused. The npz it builds feeds
    ``aloe simulate --features``.
    """


@pools_group.command("list")
def list_command() -> None:
    """Name, source, encoder, long tail and description of every pool."""
    width = max(len(name) for name in POOLS)
    for spec in POOLS.values():
        click.echo(f"{spec.name:{width}} {spec.source:15} {spec.encoder:19} n0={spec.n0} alpha={spec.alpha} "
                   f"seed={spec.seed}  {spec.about}")


def _summary(name: str, path: Path, meta: dict) -> str:
    counts = meta["pool_counts"]
    state = "reused" if meta.get("reused") else f"built in {meta['seconds']} s"
    return (f"{name}: {meta['n_items']} items, {len(counts)} classes (largest {max(counts)}, smallest "
            f"{min(counts)}), {meta['n_test']} test items, {meta['feature_dim']}-d features; {state}: {path}")


@pools_group.command("build")
@click.argument("names", nargs=-1, required=True)
@click.option("--out", type=click.Path(path_type=Path), help="The npz to write (one pool only).")
@click.option("--dir", "directory", default=DEFAULT_DIR, show_default=True, type=click.Path(path_type=Path),
              help="Where pools go as NAME.npz when --out is not given.")
@click.option("--force", is_flag=True, help="Rebuild even when the npz already holds this pool.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def build_command(names: tuple[str, ...], out: Path | None, directory: Path, force: bool, quiet: bool) -> None:
    """Build the pools NAMES (see ``aloe pools list``; ``all`` for every one) into npz files.

    A pool already built with the same settings is reused. Then, for example:
    aloe simulate --features runs/pools/mnist-lt-0.01.npz --out runs/sim --rounds 20
    """
    names = tuple(POOLS) if names == ("all",) else names
    specs = [get_spec(name) for name in names]
    if out is not None and len(specs) != 1:
        raise AloeError("--out names one file: build one pool with it, or use --dir")
    for spec in specs:
        path = out or default_path(spec.name, directory)
        click.echo(_summary(spec.name, path, build_pool(spec, path, force=force, quiet=quiet)))
