"""What every command shares: the typer app, consoles, one-line errors, progress bars, the options
several commands take, and how a verdict is printed."""
from __future__ import annotations

import functools
import sys
import typing
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from nnmark.errors import MissingExtra, NNMarkError

console = Console()
err_console = Console(stderr=True)

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Watermark neural networks and prove ownership of suspect models.")

DataDirOption = typer.Option(None, "--data-dir", envvar="NNMARK_DATA",
                             help="Directory holding dataset files (or set NNMARK_DATA).")
ForceOption = typer.Option(False, "--force", help="Replace OUT if it exists.")


def command(target: typer.Typer = app, name: Optional[str] = None):
    """Register a command whose NNMarkErrors become one clear line and exit status 2."""

    def register(func):
        @functools.wraps(func)
        def run(*args, **kwargs):
            try:
                return func(*args, **kwargs)
            except NNMarkError as error:
                fail(error)

        return target.command(name)(run)

    return register


def fail(error: NNMarkError) -> typing.NoReturn:
    label = "missing extra" if isinstance(error, MissingExtra) else "error"
    err_console.print(f"[bold red]{label}:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
    sys.exit(error.exit_code)


def warn(message: str) -> None:
    err_console.print(f"[bold yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


@contextmanager
def progress_bars(enabled: bool = True):
    if not enabled:
        yield None
        return
    progress = Progress(TextColumn("[progress.description]{task.description}"), BarColumn(),
                        MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                        console=err_console, transient=False, disable=not err_console.is_terminal)
    with progress:
        yield progress


def verdict_word(owned: bool) -> str:
    return "[bold green]OWNED[/]" if owned else "[yellow]not owned[/]"


def verdict_rows(title: Optional[str], rows: list[tuple[str, Optional[float], dict[str, Any]]]) -> Table:
    """A table of (model name, test accuracy or None, verdict as ``Verdict.to_dict()``)."""
    table = Table(title=title)
    show_accuracy = any(accuracy is not None for _, accuracy, _ in rows)
    for column, justify in (("model", "left"), ("test acc", "right"), ("evidence k/n", "right"),
                            ("p-value", "right"), ("verdict", "left")):
        if column != "test acc" or show_accuracy:
            table.add_column(column, justify=justify)
    for name, accuracy, verdict in rows:
        cells = [name] + (["-" if accuracy is None else f"{100 * accuracy:.1f}%"] if show_accuracy else [])
        table.add_row(*cells, f"{verdict['matches']}/{verdict['total']}", verdict["p_value_text"],
                      verdict_word(verdict["owned"]))
    return table


def print_guarantee(verdict: dict[str, Any]) -> None:
    """The decision rule and what its error rate rests on; an estimated null says so in yellow."""
    console.print(f"decision rule: {verdict['decision_rule']}")
    style = "" if verdict["null_kind"] == "exact" else "[bold yellow]"
    console.print(f"{style}error rate: {verdict['guarantee']}{'[/]' if style else ''}")
