"""Parsing and printing shared by the CLI commands."""
from __future__ import annotations

import sys
import typing
from contextlib import contextmanager
from dataclasses import MISSING, fields
from typing import Any

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

from nnmark.errors import NNMarkError

console = Console()
err_console = Console(stderr=True)


def parse_shape(text: str, field: str = "input-shape") -> tuple[int, int, int]:
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise NNMarkError("must be three positive integers", field=field, expected="C,H,W e.g. 3,32,32",
                          got=text)
    return shape  # type: ignore[return-value]


def parse_assignments(items: list[str] | None, option_type: type, flag: str) -> dict[str, Any]:
    """Turn repeated ``NAME=VALUE`` flags into typed values for the dataclass ``option_type``."""
    hints = typing.get_type_hints(option_type)
    known = {f.name for f in fields(option_type)}
    values: dict[str, Any] = {}
    for item in items or []:
        name, sep, raw = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in known:
            raise NNMarkError(f"{flag} takes NAME=VALUE with NAME one of: {', '.join(sorted(known)) or 'none'}",
                              field=flag, got=item)
        values[name] = convert(raw, hints[name], f"{flag} {name}")
    return values


def convert(raw: str, kind: Any, field: str) -> Any:
    try:
        if kind is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        return kind(raw)
    except (TypeError, ValueError):
        raise NNMarkError("has the wrong type", field=field, expected=getattr(kind, "__name__", str(kind)),
                          got=raw) from None


def option_fields(option_type: type) -> list[tuple[str, Any, Any, str]]:
    """(name, type, default, help) of each field, help taken from a ``help`` metadata entry."""
    hints = typing.get_type_hints(option_type)
    result = []
    for f in fields(option_type):
        default = f.default if f.default is not MISSING else None
        result.append((f.name, hints[f.name], default, f.metadata.get("help", "")))
    return result


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


def fail(error: NNMarkError) -> typing.NoReturn:
    err_console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
    sys.exit(error.exit_code)
