"""A null measured on control models made without the key, with the model as the unit.

For each control the record keeps which key items it answered as the key says (one 0/1 per
item), so the null of any subset of the items is the controls' counts on that subset, and a
verifier can see the spread between models rather than one pooled rate. It is tied to the key by
the key's commitment and is stored as plain JSON (``nnmark calibrate --out null.json``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nnmark.errors import NNMarkError
from nnmark.io import ensure_can_write_file, read_json, write_json

FORMAT = "nnmark-null/1"
# Fewer controls than this cannot give a p-value below 1/11 even inside their own range.
MIN_CONTROLS = 10


@dataclass
class ControlModel:
    """A model made without the key, with what a null records of it (its name, architecture and
    test accuracy: an under-trained control answers oddly and widens the null)."""

    name: str
    architecture: str
    model: Any  # a torch.nn.Module or a Suspect
    test_accuracy: float
    spec: Any = None  # its ModelSpec, where it is one of ours


@dataclass
class ControlRecord:
    name: str
    hits: list[int]  # 1 where the control answered the key's label for that item
    probe_target_rate: float | None = None  # its rate of sending ordinary inputs to the target
    architecture: str | None = None
    test_accuracy: float | None = None  # an under-trained control answers oddly and widens the null


@dataclass
class ControlNull:
    key_commitment: str
    controls: list[ControlRecord] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.controls)

    def counts(self, indices: list[int] | None = None) -> np.ndarray:
        rows = np.asarray([c.hits for c in self.controls], dtype=int)
        if indices is not None:
            rows = rows[:, indices]
        return rows.sum(axis=1)

    def describe(self) -> str:
        kinds = sorted({c.architecture for c in self.controls if c.architecture})
        made = f" ({', '.join(kinds)})" if kinds else ""
        return f"{self.size} control models made without the key{made}"

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "key_commitment": self.key_commitment,
                "controls": [vars(c) for c in self.controls]}

    def check_for(self, commitment: str, items: int, where: str = "null") -> None:
        if self.key_commitment != commitment:
            raise NNMarkError("was measured for another key", path=where, field="key_commitment",
                              expected=commitment[:16] + "…", got=self.key_commitment[:16] + "…")
        if self.size < MIN_CONTROLS:
            raise NNMarkError(f"has {self.size} control models; an estimated null needs at least "
                              f"{MIN_CONTROLS} (nnmark calibrate trains 20 by default)", path=where,
                              field="controls")
        if any(len(c.hits) != items for c in self.controls):
            raise NNMarkError("control records do not cover the key's items", path=where,
                              field="controls.hits", expected=f"{items} entries each")


def save_null(null: ControlNull, path: str | Path, force: bool = False) -> Path:
    path = ensure_can_write_file(path, force)
    write_json(path, null.to_json())
    return path


def load_null(path: str | Path) -> ControlNull:
    """Read a null file, checking every field (it may come from someone else)."""
    path = Path(path)
    data = read_json(path, "null")
    if data.get("format") != FORMAT:
        raise NNMarkError("is not an nnmark null file", path=path, field="format",
                          expected=repr(FORMAT), got=data.get("format"))
    commitment = data.get("key_commitment")
    if not isinstance(commitment, str) or len(commitment) != 64:
        raise NNMarkError("must be the key's 64-digit commitment", path=path, field="key_commitment",
                          got=commitment)
    rows = data.get("controls")
    if not isinstance(rows, list):
        raise NNMarkError("must be a list", path=path, field="controls")
    controls = []
    for index, row in enumerate(rows):
        where = f"controls[{index}]"
        if not isinstance(row, dict):
            raise NNMarkError("must be an object", path=path, field=where)
        hits = row.get("hits")
        if not isinstance(hits, list) or not all(h in (0, 1) and not isinstance(h, float) for h in hits):
            raise NNMarkError("must be a list of 0 and 1", path=path, field=f"{where}.hits")
        rate = row.get("probe_target_rate")
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float))
                                 or not 0 <= rate <= 1):
            raise NNMarkError("must be a rate in [0, 1] or null", path=path, field=f"{where}.probe_target_rate",
                              got=rate)
        accuracy = row.get("test_accuracy")
        if accuracy is not None and (isinstance(accuracy, bool) or not isinstance(accuracy, (int, float))
                                     or not 0 <= accuracy <= 1):
            raise NNMarkError("must be an accuracy in [0, 1] or null", path=path, field=f"{where}.test_accuracy",
                              got=accuracy)
        name, architecture = row.get("name", f"control {index}"), row.get("architecture")
        controls.append(ControlRecord(str(name), [int(h) for h in hits],
                                      None if rate is None else float(rate),
                                      None if architecture is None else str(architecture),
                                      None if accuracy is None else float(accuracy)))
    lengths = {len(c.hits) for c in controls}
    if len(lengths) > 1:
        raise NNMarkError("controls cover different numbers of items", path=path, field="controls.hits")
    return ControlNull(commitment, controls)
