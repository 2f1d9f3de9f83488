"""Every script under benchmarks/ runs, at a size that takes seconds: a smoke test that the
scripts still fit the package they measure (their figures come from full runs, see docs/)."""
import runpy
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
    "uchida_alignment_null.py": ["--models", "3", "--keys", "1"],
    "null_audit.py": ["--simulate", "--trials", "50"],
    "train_throughput.py": ["--steps", "1", "--batch", "16", "--workers", "0"],
    "dawn_thief.py": ["--secrets", "1", "--epochs", "1", "--owner-epochs", "1"],
    "dark_knowledge_thief.py": ["--keys", "1", "--owner-epochs", "1", "--thieves", "1", "--with-dawn"],
    "rank_statistic_power.py": ["--thieves", "50"],
    "fingerprint_thief.py": ["--keys", "1", "--owner-epochs", "1", "--controls", "10", "--innocents", "1", "--thief-epochs", "1",
                             "--options", "size=10,candidates=40,surrogates=1,references=1,epochs=1,steps=5"],
    "embedding_cost.py": ["--seeds", "1", "--epochs", "1", "--schemes", "adi,dark-knowledge", "--out", "cost"],
    "startup.py": ["--runs", "1", "--cases", "help,version"],
    "demo_time.py": ["--runs", "1", "--epochs", "1"],
    "own_loop_overhead.py": ["--steps", "2", "--repeats", "1", "--resnet-width", "8"],
    "folder_memory.py": ["--sizes", "64", "--folders", "folders", "--workers", "0", "--batch", "32"],
    "users_models.py": ["--schemes", "adi", "--architectures", "sequential", "--innocent-vits", "0"],
    "bench_search.py": ["--schemes", "adi", "--attacks", "prune-tune:0.5", "--seeds", "1", "--victim-epochs", "6",
                        "--out", "search"],
    "gpu_suite.py": ["--dry-run", "--no-compile", "--data", "absent.npz", "--out", "gpu"],
}
# reads a bench directory holding both searches: the one bench_search.py leaves behind (run after it, below)
AFTER = {"bench_search.py": ("robustness_tables.py", ["search/results.json"])}


def test_every_script_is_covered():
    scripts = {p.name for p in (ROOT / "benchmarks").glob("*.py") if not p.name.startswith("_")}
    assert scripts == set(SCRIPTS) | {script for script, _ in AFTER.values()}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_script_runs(script, tmp_path, monkeypatch, capsys):
    # run as `python3 benchmarks/SCRIPT ...` would, in this process (a fresh interpreter per script
    # would spend most of the test starting torch)
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    monkeypatch.setattr(sys, "argv", [script, *SCRIPTS[script]])
    monkeypatch.chdir(tmp_path)
    threads = __import__("torch").get_num_threads()
    try:
        runpy.run_path(str(ROOT / "benchmarks" / script), run_name="__main__")
    except SystemExit as exit_:
        assert exit_.code in (0, None), capsys.readouterr().out[-2000:]
    finally:
        __import__("torch").set_num_threads(threads)
    printed = capsys.readouterr().out
    assert printed.strip(), "prints its figures"
    if "--datasets" in SCRIPTS[script]:
        assert "| digits |" in printed, printed[-2000:]  # a table row measured on the data asked for
    if script in AFTER:
        follower, arguments = AFTER[script]
        monkeypatch.setattr(sys, "argv", [follower, *arguments])
        runpy.run_path(str(ROOT / "benchmarks" / follower), run_name="__main__")
        tables = capsys.readouterr().out
        assert "| attack | adi |" in tables and "| prune-tune:0.5 |" in tables, tables[-2000:]
        assert "removed by both searches" in tables
