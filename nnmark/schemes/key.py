"""Watermark keys on disk: ``key.safetensors`` (secret tensors) + ``key.json`` (metadata, the salt
and the commitment).

The commitment is what an owner publishes or timestamps before a dispute. It is salted with 256
random bits kept in the key, so it hides the key (no one can find the key by trying seeds
against it), and it is the root of a Merkle tree over the key items, so it binds them one by one:
a subset revealed later is checked against it alone (:mod:`nnmark.schemes.commitment`). A key
that no longer matches its commitment is refused.

Keys written by nnmark 0.1 (``nnmark-key/1``) still load: their commitment is the old unsalted
hash, which can be inverted by trying seeds when the seed was small, and a key loaded from that
format says so in ``legacy_warning``.
"""
from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from nnmark.version import __version__
from nnmark.errors import NNMarkError
from nnmark.io import atomic_directory, read_json, write_json
from nnmark.schema import KeyFile, validate
from nnmark.schemes.commitment import SALT_BYTES, KeyTree, build_tree, tensor_bytes

TENSORS_FILE = "key.safetensors"
META_FILE = "key.json"
COMMITMENT_FILE = "commitment.txt"
FORMAT = "nnmark-key/2"
LEGACY_FORMAT = "nnmark-key/1"
LEGACY_DOMAIN = b"nnmark-key-commitment/1\n"
LEGACY_WARNING = ("this key was written by nnmark 0.1 (nnmark-key/1): its commitment is unsalted, so "
                  "anyone holding the commitment can recover a key made from a small seed by trying "
                  "seeds; make a new key for new models")


# scheme name -> the tensors with one row per key item, as each scheme declares them
# (``WatermarkScheme.item_tensors``); ``register_scheme`` fills it, so a key never needs the
# scheme registry above it to know what its commitment's leaves are.
ITEM_TENSORS: dict[str, tuple[str, ...]] = {}


def _item_tensors_of(scheme: str, tensors: dict[str, torch.Tensor]) -> tuple[str, ...]:
    return tuple(name for name in ITEM_TENSORS.get(scheme, ()) if name in tensors)


@dataclass
class WatermarkKey:
    scheme: str
    num_classes: int
    input_shape: tuple[int, int, int]
    tensors: dict[str, torch.Tensor]
    params: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    salt: bytes = field(default_factory=lambda: secrets.token_bytes(SALT_BYTES))
    item_tensors: tuple[str, ...] | None = None  # None: the scheme's declared item tensors

    def __post_init__(self) -> None:
        if self.item_tensors is None:
            self.item_tensors = _item_tensors_of(self.scheme, self.tensors)

    @property
    def legacy(self) -> bool:
        return not self.salt

    @property
    def legacy_warning(self) -> str | None:
        return LEGACY_WARNING if self.legacy else None

    @property
    def item_count(self) -> int:
        return len(self.tensors[self.item_tensors[0]]) if self.item_tensors else 0

    def public_metadata(self) -> dict[str, Any]:
        return {"scheme": self.scheme, "num_classes": self.num_classes,
                "input_shape": list(self.input_shape), "params": self.params}

    def tree(self) -> KeyTree:
        """The Merkle tree over the key's items, computed from its contents every time (nothing is
        cached on a key, so a key changed in place never answers with a stale commitment)."""
        items = {name: self.tensors[name] for name in self.item_tensors}
        lengths = {name: len(t) if t.ndim else 0 for name, t in items.items()}
        if len(set(lengths.values())) > 1:
            # one row per item in every item tensor, or the items are not defined (a crafted file)
            raise NNMarkError("item tensors differ in length: one row per key item in each", field="/".join(lengths),
                              got=lengths)
        shared = {name: t for name, t in self.tensors.items() if name not in self.item_tensors}
        metadata = {**self.public_metadata(), "item_tensors": sorted(self.item_tensors)}
        return build_tree(self.salt, metadata, items, shared)

    @property
    def commitment(self) -> str:
        """The published digest (see the module docstring); the creation time is not part of it."""
        if self.legacy:
            return self._legacy_commitment()
        return self.tree().commitment

    def _legacy_commitment(self) -> str:
        digest = hashlib.sha256(LEGACY_DOMAIN)
        digest.update(json.dumps(self.public_metadata(), sort_keys=True, separators=(",", ":")).encode())
        for name in sorted(self.tensors):
            digest.update(tensor_bytes(name, self.tensors[name]))
        return digest.hexdigest()


def save_key(key: WatermarkKey, path: str | Path, force: bool = False) -> Path:
    path = Path(path)
    with atomic_directory(path, force) as staging:
        save_file({k: v.detach().cpu().contiguous() for k, v in key.tensors.items()},
                  str(staging / TENSORS_FILE))
        meta: dict[str, Any] = {
            "format": LEGACY_FORMAT if key.legacy else FORMAT,
            "nnmark_version": __version__,
            "created_at": key.created_at,
            "commitment": key.commitment,
            **key.public_metadata(),
        }
        if not key.legacy:
            meta["salt"] = key.salt.hex()
            meta["item_tensors"] = list(key.item_tensors)
        write_json(staging / META_FILE, meta)
        (staging / COMMITMENT_FILE).write_text(key.commitment + "\n")
    return path


def load_key(path: str | Path, check_commitment: bool = True) -> WatermarkKey:
    """Load a key directory; refuse it when its contents no longer match its commitment."""
    path = Path(path)
    if not path.is_dir():
        raise NNMarkError("key directory does not exist", path=path,
                          expected=f"a directory holding {TENSORS_FILE} and {META_FILE}")
    meta_path = path / META_FILE
    parsed = validate(KeyFile, read_json(meta_path, "key"), meta_path, formats=(FORMAT, LEGACY_FORMAT), what="key")
    version = parsed.format
    scheme, num_classes, shape, params = parsed.scheme, parsed.num_classes, list(parsed.input_shape), dict(parsed.params)
    recorded = parsed.commitment
    salt, item_tensors = b"", None
    if version == FORMAT:
        if parsed.salt is None or parsed.item_tensors is None:
            raise NNMarkError("is missing", path=meta_path, field="salt" if parsed.salt is None else "item_tensors",
                              expected=f"{FORMAT} keys record their salt and item tensors")
        salt = bytes.fromhex(parsed.salt)
        item_tensors = tuple(parsed.item_tensors)
    tensors_path = path / TENSORS_FILE
    if not tensors_path.is_file():
        raise NNMarkError("key material file is missing", path=tensors_path)
    try:
        tensors = load_file(str(tensors_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise NNMarkError(f"is not a readable safetensors file ({exc})", path=tensors_path) from None
    if item_tensors is not None:
        missing = [n for n in item_tensors if n not in tensors]
        rows = {len(tensors[n]) if tensors[n].ndim else -1 for n in item_tensors if n in tensors}
        if missing or len(rows) > 1 or -1 in rows:
            raise NNMarkError("item tensors are missing or differ in length", path=tensors_path,
                              field="item_tensors", expected=f"tensors {list(item_tensors)} with one row per item")
    key = WatermarkKey(scheme, num_classes, tuple(shape), tensors, params, parsed.created_at, salt, item_tensors)
    if check_commitment and key.commitment != recorded:
        raise NNMarkError(
            "key material does not match its commitment: the key was altered after it was "
            f"created (recorded {recorded[:16]}…, contents hash to {key.commitment[:16]}…)",
            path=path)
    return key
