"""Shared plumbing for the click CLIs: one-line errors with exit code 2."""

from __future__ import annotations

import errno
import sys
from collections.abc import Sequence

import click

from aloe.errors import AloeError


UNWRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT}


def run_cli(command: click.Command, argv: Sequence[str] | None = None) -> int:
    """Run a click command; turn :class:`AloeError`, bad options and the user's file-system errors
    (a read-only folder, a path that exists as a file) into one line ``error: ...`` on stderr and
    exit code 2.

    Tests call the CLIs' ``main(argv)`` and get the exit code back instead of ``SystemExit``.
    """
    try:
        command.main(args=list(argv) if argv is not None else None, standalone_mode=False)
    except AloeError as exc:
        click.echo(f"error: {exc}", err=True)
        return 2
    except OSError as exc:  # a read-only store, a full disk, an --out that is a file: the user's to fix
        if exc.errno in UNWRITABLE:
            where = f" {exc.filename}" if exc.filename else ""
            click.echo(f"error: cannot write{where}: {(exc.strerror or str(exc)).lower()}", err=True)
        elif exc.filename and exc.strerror:
            click.echo(f"error: {exc.filename}: {exc.strerror.lower()}", err=True)
        else:
            raise
        return 2
    except click.exceptions.Abort:
        click.echo("aborted; the same command run again continues where this one stopped", err=True)
        return 1
    except click.UsageError as exc:  # click's own four lines (usage, hint, blank, error) made one
        where = f" (see {exc.ctx.command_path} --help)" if exc.ctx else ""
        click.echo(f"error: {exc.format_message()}{where}", err=True)
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    return 0


def exit_with(command: click.Command, argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: run :func:`run_cli` and exit with its code."""
    sys.exit(run_cli(command, argv))
