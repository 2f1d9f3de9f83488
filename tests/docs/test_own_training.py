"""Every Python block of docs/own-training.md runs as it stands, in a fresh interpreter, and ends
with the verdict OWNED."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "own-training.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_doc_has_its_three_recipes():
    assert len(BLOCKS) == 3 and all("nnmark.verify_model" in block for block in BLOCKS)


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=["plain-loop", "lightning", "hugging-face"])
def test_each_block_runs_and_ends_owned(index, tmp_path):
    done = subprocess.run([sys.executable, "-c", BLOCKS[index]], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600, env={**__import__("os").environ, "OMP_NUM_THREADS": "2"})
    assert done.returncode == 0, done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("OWNED"), done.stdout[-2000:]
