from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from nnmark.data import load_dataset

# Tests run on CI's two cores; more threads than cores only adds contention.
torch.set_num_threads(min(2, os.cpu_count() or 1))

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared_data_dir() -> Path | None:
    """The datasets beside the project (or NNMARK_DATA), or None when neither exists."""
    env = os.environ.get("NNMARK_DATA")
    for candidate in ([Path(env)] if env else []) + [SHARED_DATA]:
        if candidate.is_dir():
            return candidate
    return None


@pytest.fixture(scope="session")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    found = shared_data_dir()
    if found is None:
        pytest.skip("no dataset directory: set NNMARK_DATA or place shared/data beside the project")
    return found
