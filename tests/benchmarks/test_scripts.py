"""Every script under benchmarks/ runs, at a size that takes seconds: a smoke test that the
scripts still fit the package they measure (their figures come from full runs, see docs/)."""
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--datasets", "digits", "--model", "small-cnn", "--epochs", "1", "--train-fraction", "0.3", "--threads", "2"]
SCRIPTS = {
    "reproduce_adi.py": TINY + ["--pretrained-epochs", "1", "--attack-epochs", "1"],
    "reproduce_uchida.py": TINY + ["--fine-tune-epochs", "1", "--prune-rates", "0.5"],
    "reproduce_zhang.py": TINY + ["--controls", "10", "--control-epochs", "1", "--prune-rates", "0.5"],
    "fast_recipe.py": TINY + ["--fast-epochs", "1", "--fast-batch", "128", "--skip-paper"],
    "uchida_strength.py": ["--strengths", "0.05", "--epochs", "1"],
    "null_audit.py": ["--simulate", "--trials", "50"],
    "train_throughput.py": ["--steps", "1", "--batch", "16", "--workers", "0"],
}


def test_every_script_is_covered():
    scripts = {p.name for p in (ROOT / "benchmarks").glob("*.py") if not p.name.startswith("_")}
    assert scripts == set(SCRIPTS)


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_script_runs(script, tmp_path):
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *SCRIPTS[script]], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert run.stdout.strip(), "prints its figures"
