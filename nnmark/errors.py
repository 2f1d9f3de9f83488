"""User-facing errors: every bad input ends in one of these, never a raw traceback."""
from __future__ import annotations

from pathlib import Path


class NNMarkError(Exception):
    """A problem with what the user gave us, worded so they can fix it.

    The CLI prints the message and exits with status 2.
    """

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        field: str | None = None,
        expected: str | None = None,
        got: object = None,
    ) -> None:
        self.path = None if path is None else str(path)
        self.field = field
        self.expected = expected
        self.got = got
        parts = []
        if self.path:
            parts.append(self.path)
        if field:
            parts.append(f"field '{field}'")
        where = ": ".join(parts)
        text = f"{where}: {message}" if where else message
        if expected is not None:
            text += f" (expected {expected}"
            text += f", got {got!r})" if got is not None else ")"
        super().__init__(text)


class NonFiniteOutput(NNMarkError):
    """A suspect whose outputs are NaN or infinite: there is nothing to read a verdict from."""


class MarkNotFound(NNMarkError):
    """A white-box suspect without the layer a key's mark is read from (another architecture)."""


class MissingExtra(NNMarkError):
    """A feature whose optional dependencies are not installed; the message names the extra."""
