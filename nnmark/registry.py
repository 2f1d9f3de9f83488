"""Name → factory registries, in the style of timm: a new model, dataset, scheme or attack is one
module that registers itself with a decorator."""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from nnmark.errors import NNMarkError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = entry
            return entry

        return add

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "none"
            raise NNMarkError(f"unknown {self.kind} '{name}' (known: {known})") from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def import_plugins(package: str, path: list[str], skip: tuple[str, ...] = ("base",)) -> None:
    """Import every module of a plug-in package, so that a new scheme, attack, model or dataset
    is one file that registers itself, with no second list of names to keep in step."""
    for module in pkgutil.iter_modules(path):
        if not module.name.startswith("_") and module.name not in skip:
            importlib.import_module(f"{package}.{module.name}")
