"""Watermark keys on disk: ``key.safetensors`` (secret tensors) + ``key.json`` (metadata and a
SHA-256 commitment over both).

The commitment is what an owner publishes or timestamps before a dispute: it binds the key
material without revealing it, and a key that no longer matches its commitment is refused.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from nnmark import __version__
from nnmark.errors import NNMarkError
from nnmark.io import atomic_directory, read_json, require_field, write_json

TENSORS_FILE = "key.safetensors"
META_FILE = "key.json"
COMMITMENT_FILE = "commitment.txt"
FORMAT = "nnmark-key/1"
COMMITMENT_DOMAIN = b"nnmark-key-commitment/1\n"


@dataclass
class WatermarkKey:
    scheme: str
    num_classes: int
    input_shape: tuple[int, int, int]
    tensors: dict[str, torch.Tensor]
    params: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def public_metadata(self) -> dict[str, Any]:
        return {"scheme": self.scheme, "num_classes": self.num_classes,
                "input_shape": list(self.input_shape), "params": self.params}

    @property
    def commitment(self) -> str:
        """SHA-256 over the canonical bytes of the metadata and every tensor (name, dtype, shape,
        little-endian contents), in name order."""
        digest = hashlib.sha256(COMMITMENT_DOMAIN)
        digest.update(json.dumps(self.public_metadata(), sort_keys=True, separators=(",", ":")).encode())
        for name in sorted(self.tensors):
            tensor = self.tensors[name].detach().to("cpu").contiguous()
            header = {"name": name, "dtype": str(tensor.dtype), "shape": list(tensor.shape)}
            digest.update(b"\n" + json.dumps(header, sort_keys=True).encode() + b"\n")
            # Raw memory is little-endian on every platform PyTorch ships for.
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()


def save_key(key: WatermarkKey, path: str | Path, force: bool = False) -> Path:
    path = Path(path)
    with atomic_directory(path, force) as staging:
        save_file({k: v.detach().cpu().contiguous() for k, v in key.tensors.items()},
                  str(staging / TENSORS_FILE))
        write_json(staging / META_FILE, {
            "format": FORMAT,
            "nnmark_version": __version__,
            "created_at": key.created_at,
            "commitment": key.commitment,
            **key.public_metadata(),
        })
        (staging / COMMITMENT_FILE).write_text(key.commitment + "\n")
    return path


def load_key(path: str | Path, check_commitment: bool = True) -> WatermarkKey:
    """Load a key directory; refuse it when its contents no longer match its commitment."""
    path = Path(path)
    if not path.is_dir():
        raise NNMarkError("key directory does not exist", path=path,
                          expected=f"a directory holding {TENSORS_FILE} and {META_FILE}")
    meta_path = path / META_FILE
    data = read_json(meta_path, "key")
    if data.get("format") != FORMAT:
        raise NNMarkError("is not an nnmark key", path=meta_path, field="format",
                          expected=repr(FORMAT), got=data.get("format"))
    scheme = require_field(data, "scheme", str, meta_path, "a scheme name")
    num_classes = require_field(data, "num_classes", int, meta_path, "a class count")
    shape = require_field(data, "input_shape", list, meta_path, "[C, H, W]")
    params = require_field(data, "params", dict, meta_path, "an object")
    recorded = require_field(data, "commitment", str, meta_path, "a SHA-256 hex digest")
    if len(shape) != 3 or not all(isinstance(v, int) and v > 0 for v in shape):
        raise NNMarkError("must be three positive integers", path=meta_path, field="input_shape",
                          expected="[C, H, W]", got=shape)
    tensors_path = path / TENSORS_FILE
    if not tensors_path.is_file():
        raise NNMarkError("key material file is missing", path=tensors_path)
    try:
        tensors = load_file(str(tensors_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise NNMarkError(f"is not a readable safetensors file ({exc})", path=tensors_path) from None
    key = WatermarkKey(scheme, num_classes, tuple(shape), tensors, params,
                       data.get("created_at", "unknown"))
    if check_commitment and key.commitment != recorded:
        raise NNMarkError(
            "key material does not match its commitment: the key was altered after it was "
            f"created (recorded {recorded[:16]}…, contents hash to {key.commitment[:16]}…)",
            path=path)
    return key
