"""Start-up of the command line: wall time of `nnmark --help`, `--version`, `keygen --help` and a
verify of a local model (median of several runs), and the import time of each (`python -X
importtime`, summed over the top-level imports), with `import torch` alone for scale.

    python3 benchmarks/startup.py --runs 5
"""
from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def import_seconds(args: list[str], cwd: Path) -> float:
    """Seconds spent importing (the sum of the top-level cumulative times `-X importtime` prints)."""
    result = subprocess.run([sys.executable, "-X", "importtime", *args], cwd=cwd, capture_output=True, text=True)
    total = 0
    for line in result.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\S.*)$", line)  # one space: a top-level import
        if match:
            total += int(match.group(1))
    return total / 1e6


def wall_seconds(args: list[str], cwd: Path, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cases", default="help,version,keygen,verify,torch",
                        help="Which of help, version, keygen, verify, torch to measure.")
    args = parser.parse_args()
    runs, wanted = args.runs, set(args.cases.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cli = ["-m", "nnmark"]
        if "verify" in wanted:  # a key and a model to verify: two more processes, so only when measured
            subprocess.run([sys.executable, *cli, "keygen", "adi", "--num-classes", "10", "--input-shape", "1,16,16",
                            "--size", "100", "--out", "key"], cwd=work, capture_output=True, check=True)
            subprocess.run([sys.executable, "-c", "from nnmark.models import ModelSpec, create_model, save_model; "
                            "s = ModelSpec('small-cnn', 10, (1, 16, 16), (0.5,), (0.25,)); "
                            "save_model(create_model(s, seed=0), s, 'model')"], cwd=work, check=True)
        cases = {"help": ("nnmark --help", [*cli, "--help"]), "version": ("nnmark --version", [*cli, "--version"]),
                 "keygen": ("nnmark keygen --help", [*cli, "keygen", "--help"]),
                 "verify": ("nnmark verify (local model, 100 queries)",
                            [*cli, "verify", "--model", "model", "--key", "key"]),
                 "torch": ("python -c 'import torch' (for scale)", ["-c", "import torch"])}
        print(f"{'command':<44} {'wall (median of ' + str(runs) + ')':>20} {'imports':>9}")
        for short, (name, command) in cases.items():
            if short in wanted:
                print(f"{name:<44} {wall_seconds(command, work, runs):>18.2f} s "
                      f"{import_seconds(command, work):>7.2f} s")


if __name__ == "__main__":
    main()
