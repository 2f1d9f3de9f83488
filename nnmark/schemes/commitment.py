"""Hiding, binding commitments to a key, with per-item inclusion proofs.

The commitment an owner publishes is

    SHA-256("nnmark-key-commitment/2" | n | merkle_root | header_digest)

* every key item (one trigger image with its label, one signature bit with its projection row)
  is a leaf of an RFC 6962 Merkle tree: leaf = SHA-256(0x00 | leaf_salt | item bytes), node =
  SHA-256(0x01 | left | right);
* ``header_digest`` hashes the key's metadata and its other secret tensors;
* both are salted from one 256-bit random salt kept in the (secret) key, each leaf with its own
  salt derived from it, so the published digest reveals nothing that trying seeds could match,
  and revealing some items (with their leaf salts and audit paths) reveals nothing of the rest.

A revealed subset is checked against the published commitment alone (:func:`check_disclosure`).
The tree is written here rather than taken from a package: it is RFC 6962's two hash rules and
an audit path, a few lines whose every byte a court's expert can check with ``hashlib``.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import torch

DOMAIN = b"nnmark-key-commitment/2\n"
LEAF_SALT_DOMAIN = b"nnmark-leaf-salt/2\n"
HEADER_DOMAIN = b"nnmark-key-header/2\n"
SALT_BYTES = 32


def tensor_bytes(name: str, tensor: torch.Tensor) -> bytes:
    """Canonical bytes of a named tensor: a JSON header (name, dtype, shape) and the raw
    little-endian contents (raw memory is little-endian on every platform PyTorch ships for)."""
    tensor = tensor.detach().to("cpu").contiguous()
    header = json.dumps({"name": name, "dtype": str(tensor.dtype), "shape": list(tensor.shape)},
                        sort_keys=True).encode()
    return b"\n" + header + b"\n" + tensor.reshape(-1).view(torch.uint8).numpy().tobytes()


def leaf_salt(salt: bytes, index: int) -> bytes:
    return hashlib.sha256(LEAF_SALT_DOMAIN + salt + index.to_bytes(8, "big")).digest()


def item_bytes(items: dict[str, torch.Tensor], index: int) -> bytes:
    return b"".join(tensor_bytes(name, items[name][index]) for name in sorted(items))


def leaf_hash(salt_of_leaf: bytes, data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + salt_of_leaf + data).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(count: int) -> int:
    """The largest power of two smaller than ``count`` (RFC 6962's split point)."""
    return 1 << ((count - 1).bit_length() - 1)


def merkle_root(leaves: list[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return _node(merkle_root(leaves[:k]), merkle_root(leaves[k:]))


def audit_path(leaves: list[bytes], index: int) -> list[bytes]:
    """Sibling hashes from leaf ``index`` up to the root."""
    if len(leaves) <= 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return audit_path(leaves[:k], index) + [merkle_root(leaves[k:])]
    return audit_path(leaves[k:], index - k) + [merkle_root(leaves[:k])]


def root_from_path(leaf: bytes, index: int, count: int, path: list[bytes]) -> bytes | None:
    """The root that ``leaf`` at ``index`` of ``count`` leaves implies through ``path``, or None
    when the path has the wrong length for that position."""
    if count <= 1:
        return leaf if not path and index == 0 else None
    if not path:
        return None
    k = _split(count)
    *rest, sibling = path
    if index < k:
        below = root_from_path(leaf, index, k, rest)
        return None if below is None else _node(below, sibling)
    below = root_from_path(leaf, index - k, count - k, rest)
    return None if below is None else _node(sibling, below)


def header_digest(salt: bytes, metadata: dict[str, Any], shared: dict[str, torch.Tensor]) -> bytes:
    digest = hashlib.sha256(HEADER_DOMAIN + salt)
    digest.update(json.dumps(metadata, sort_keys=True, separators=(",", ":")).encode())
    for name in sorted(shared):
        digest.update(tensor_bytes(name, shared[name]))
    return digest.digest()


def commitment_of(count: int, root: bytes, header: bytes) -> str:
    return hashlib.sha256(DOMAIN + count.to_bytes(8, "big") + root + header).hexdigest()


@dataclass(frozen=True)
class KeyTree:
    """Everything derived from a key's salt and items: leaves, root, header digest, commitment."""

    leaves: list[bytes]
    root: bytes
    header: bytes
    commitment: str


def build_tree(salt: bytes, metadata: dict[str, Any], items: dict[str, torch.Tensor],
               shared: dict[str, torch.Tensor]) -> KeyTree:
    count = len(next(iter(items.values()))) if items else 0
    leaves = [leaf_hash(leaf_salt(salt, i), item_bytes(items, i)) for i in range(count)]
    root = merkle_root(leaves)
    header = header_digest(salt, metadata, shared)
    return KeyTree(leaves, root, header, commitment_of(count, root, header))


def disclosure_record(salt: bytes, tree: KeyTree, indices: list[int]) -> dict[str, Any]:
    """What a third party needs, beside the revealed items, to check them against the commitment."""
    return {
        "format": "nnmark-disclosure/1",
        "commitment": tree.commitment,
        "items_in_key": len(tree.leaves),
        "merkle_root": tree.root.hex(),
        "header_digest": tree.header.hex(),
        "indices": list(indices),
        "leaf_salts": [leaf_salt(salt, i).hex() for i in indices],
        "audit_paths": [[node.hex() for node in audit_path(tree.leaves, i)] for i in indices],
    }


def check_disclosure(record: dict[str, Any], items: dict[str, torch.Tensor], commitment: str) -> list[str]:
    """Check revealed ``items`` (row j is key item ``record['indices'][j]``) against a published
    ``commitment``. Returns the problems found; an empty list means every item is proven to be the
    committed key's item at its index."""
    problems: list[str] = []
    try:
        count = int(record["items_in_key"])
        root = bytes.fromhex(record["merkle_root"])
        header = bytes.fromhex(record["header_digest"])
        indices = [int(i) for i in record["indices"]]
        salts = [bytes.fromhex(s) for s in record["leaf_salts"]]
        paths = [[bytes.fromhex(node) for node in path] for path in record["audit_paths"]]
    except (KeyError, TypeError, ValueError) as exc:
        return [f"disclosure record is malformed ({exc!r})"]
    if commitment_of(count, root, header) != commitment:
        problems.append("root, header digest and item count do not hash to the published commitment")
    if not (len(indices) == len(salts) == len(paths)) or len(set(indices)) != len(indices):
        return problems + ["indices, leaf salts and audit paths do not line up one to one"]
    rows = {len(tensor) for tensor in items.values()}
    if rows != {len(indices)}:
        return problems + [f"{len(indices)} indices but item tensors with {sorted(rows)} rows"]
    for row, (index, salt, path) in enumerate(zip(indices, salts, paths)):
        if not 0 <= index < count:
            problems.append(f"item index {index} is outside the key's {count} items")
            continue
        leaf = leaf_hash(salt, item_bytes(items, row))
        if root_from_path(leaf, index, count, path) != root:
            problems.append(f"item {index} is not the committed item at that position")
    return problems
