"""A server's log of the queries it answered: one safetensors file per request (its images as
received, the client's address and the time), written atomically, so a log survives a crash and
can be read without unpickling anything. DAWN's verification keys are derived from it."""
from __future__ import annotations

import itertools
import os
import threading
import time
import uuid
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from nnmark.errors import NNMarkError

SUFFIX = ".queries.safetensors"


class QueryLog:
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        if self.directory.exists() and not self.directory.is_dir():
            raise NNMarkError("exists and is not a directory", path=self.directory, field="--query-log")
        self.directory.mkdir(parents=True, exist_ok=True)
        self._counter = itertools.count()
        self._lock = threading.Lock()

    def record(self, images: torch.Tensor, client: str) -> Path:
        with self._lock:
            sequence = next(self._counter)
        name = f"{time.time_ns():020d}-{sequence:06d}-{uuid.uuid4().hex[:8]}{SUFFIX}"
        final = self.directory / name
        staging = self.directory / f".{name}.partial"
        save_file({"inputs": images.detach().float().cpu().contiguous()}, str(staging),
                  metadata={"client": client, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        os.replace(staging, final)
        return final


def read_query_log(directory: str | Path, client: str | None = None) -> torch.Tensor:
    """Every query in the log, in the order received (only ``client``'s where given)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise NNMarkError("query log directory does not exist", path=directory, field="--log")
    batches = []
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                sender = (handle.metadata() or {}).get("client")
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise NNMarkError(f"is not a readable query log entry ({exc})", path=path) from None
        if client is not None and sender != client:
            continue
        inputs = tensors.get("inputs")
        if inputs is None or inputs.ndim != 4 or not inputs.is_floating_point():
            raise NNMarkError("holds no N x C x H x W float tensor 'inputs'", path=path, field="inputs")
        if batches and inputs.shape[1:] != batches[0].shape[1:]:
            raise NNMarkError("holds images of another shape than the rest of the log", path=path, field="inputs",
                              expected=list(batches[0].shape[1:]), got=list(inputs.shape[1:]))
        batches.append(inputs)
    if not batches:
        raise NNMarkError("holds no queries" + (f" from client {client}" if client else ""), path=directory,
                          field="--log")
    return torch.cat(batches)
