"""The ``nnmark`` command: a thin typer layer over :mod:`nnmark.workflows` and :mod:`nnmark.api`.
One module per group of commands; each parses its arguments, calls one flow and prints what it
returned."""
from __future__ import annotations

import typer

from nnmark.cli import attack, calibrate, demo, encdec, keygen, serve, train, verify  # noqa: F401  (they register)
from nnmark.cli.common import app, console, err_console
from nnmark.version import __version__


def _version(value: bool) -> None:
    if value:
        console.print(f"nnmark {__version__}")
        raise typer.Exit()


@app.callback()
def root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    pass


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted; nothing was written")
        raise SystemExit(130) from None


__all__ = ["app", "main"]
