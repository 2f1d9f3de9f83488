"""Turning what a user typed into typed values: shapes, ``NAME=VALUE`` assignments for a scheme's
option dataclass, and the fields of those dataclasses (what a command line offers for them)."""
from __future__ import annotations

import typing
from dataclasses import MISSING, dataclass, fields
from typing import Any

from nnmark.errors import NNMarkError


@dataclass(frozen=True)
class OptionField:
    """One field of a scheme's option dataclass, as a command line offers it."""

    name: str
    kind: type
    default: Any
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


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


def option_fields(option_type: type) -> list[OptionField]:
    """Each field of ``option_type`` with its type, default and help (its ``help`` metadata)."""
    hints = typing.get_type_hints(option_type)
    return [OptionField(f.name, hints[f.name], f.default if f.default is not MISSING else None,
                        f.metadata.get("help", "")) for f in fields(option_type)]
