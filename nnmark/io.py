"""Output directories written atomically, and hashing helpers.

Every output of nnmark is a directory. It is built beside its destination under a temporary
name and renamed into place only when complete, so an interrupted run never leaves a
half-written model or key, and an existing directory is replaced only with ``force``.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nnmark.errors import NNMarkError


def ensure_can_write(path: str | Path, force: bool) -> Path:
    """Fail early (before any work) when ``path`` exists and ``force`` is not set."""
    path = Path(path)
    if path.exists() and not force:
        raise NNMarkError(
            "already exists; refusing to overwrite it (pass --force to replace it)", path=path
        )
    if path.exists() and not path.is_dir():
        raise NNMarkError("exists and is not a directory", path=path)
    return path


def ensure_can_write_file(path: str | Path, force: bool) -> Path:
    """As :func:`ensure_can_write`, for an output that is one file; makes its parent folder."""
    path = Path(path)
    if path.exists() and not force:
        raise NNMarkError("already exists; refusing to overwrite it (pass --force to replace it)", path=path)
    if path.is_dir():
        raise NNMarkError("is a directory; expected a file to write", path=path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def atomic_directory(path: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary directory that replaces ``path`` when the block succeeds."""
    path = ensure_can_write(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if path.exists():
        # Keep the old directory until the new one is in place, so no moment exists with neither.
        backup = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
        os.replace(path, backup / path.name)
        os.replace(staging, path)
        shutil.rmtree(backup, ignore_errors=True)
    else:
        os.replace(staging, path)


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON through a temporary file and a rename, so readers never see half a file."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write text through a temporary file and a rename, as :func:`write_json` does."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_json(path: str | Path, what: str) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise NNMarkError(f"{what} metadata file is missing", path=path)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise NNMarkError(f"{what} metadata is not valid JSON ({exc})", path=path) from None
    if not isinstance(data, dict):
        raise NNMarkError(f"{what} metadata must be a JSON object", path=path)
    return data


def require_field(data: dict[str, Any], field: str, kind: type | tuple[type, ...], path: Path,
                  expected: str) -> Any:
    if field not in data:
        raise NNMarkError("is missing", path=path, field=field, expected=expected)
    value = data[field]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is a subclass of int in Python, but `true` is never a valid count or size.
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise NNMarkError("has the wrong type", path=path, field=field, expected=expected, got=value)
    return value


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
