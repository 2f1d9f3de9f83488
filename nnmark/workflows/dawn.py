"""``nnmark dawn derive``: the verification key for a client the owner suspects, from the API's log."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nnmark.io import ensure_can_write
from nnmark.models.store import load_model
from nnmark.schemes.base import get_scheme
from nnmark.schemes.dawn import derive_key
from nnmark.schemes.key import WatermarkKey, load_key, save_key
from nnmark.serving.query_log import read_query_log

# What every derived key's verdict rests on, in words the command prints.
LOG_CAVEAT = ("The verdict is valid only if this log holds every query the client sent, recorded before the suspect "
              "was queried: a log trimmed after seeing a suspect's answers can frame anyone.")


@dataclass
class DerivedKey:
    key: WatermarkKey
    path: Path


def derive_to_directory(key: str | Path, log: str | Path, model: str | Path, out: str | Path, *,
                        client: str | None = None, force: bool = False) -> DerivedKey:
    ensure_can_write(out, force)
    serving = load_key(key)
    loaded = load_model(model)
    get_scheme(serving.scheme).check_fits(serving, loaded.spec.num_classes, tuple(loaded.spec.input_shape),
                                          f"the model (key {key})")
    derived = derive_key(serving, loaded.model, read_query_log(log, client))
    return DerivedKey(derived, save_key(derived, out, force=force))
