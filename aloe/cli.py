"""``aloe``: the umbrella command (store inspection, simulation, reports, labels, the demo)."""

from __future__ import annotations

from collections.abc import Sequence

import click

from aloe import __version__
from aloe.internal.cli import exit_with
from aloe.loop.cli import demo_command, report_command, simulate_command
from aloe.loop.labels_cli import labels_group
from aloe.loop.pools_cli import pools_group
from aloe.store.cli import store_group


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="aloe")
def cli() -> None:
    """Open-world active learning with ALOE.

    The labeling loop is two commands, run once per round: ``aloe-embed`` (fine-tune the encoder on
    the labels so far and embed the pool into a store) then ``aloe-select`` (pick the next batch).
    This umbrella command holds the rest: inspect a store, simulate rounds with an oracle, report.
    """


cli.add_command(store_group)
cli.add_command(labels_group)
cli.add_command(simulate_command)
cli.add_command(report_command)
cli.add_command(demo_command)
cli.add_command(pools_group)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point for ``aloe``."""
    exit_with(cli, argv)
