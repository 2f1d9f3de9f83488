"""Wall time of `nnmark demo` (median of several runs, each a fresh process, start-up included),
with the accuracies and verdicts of each run, which must not change from run to run.

    python3 benchmarks/demo_time.py --runs 5
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--scheme", default="adi")
    parser.add_argument("--epochs", type=int, default=None, help="Override the demo's epochs (smoke runs).")
    args = parser.parse_args()
    times, outcomes = [], set()
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            out = Path(tmp) / f"demo-{run}"
            command = [sys.executable, "-m", "nnmark", "demo", "--scheme", args.scheme, "--out", str(out)]
            if args.epochs:
                command += ["--epochs", str(args.epochs)]
            started = time.perf_counter()
            subprocess.run(command, capture_output=True, check=True)
            times.append(time.perf_counter() - started)
            summary = json.loads((out / "summary.json").read_text())
            outcome = tuple((name, round(100 * summary[name]["test_accuracy"], 1), summary[name]["verify"]["matches"],
                             summary[name]["verify"]["owned"]) for name in ("watermarked", "clean"))
            outcomes.add(outcome)
            print(f"run {run + 1}: {times[-1]:.2f} s  " + "  ".join(
                f"{name} {acc}% {matches} {'OWNED' if owned else 'not owned'}" for name, acc, matches, owned in outcome))
    print(f"nnmark demo --scheme {args.scheme}: median {statistics.median(times):.2f} s of {args.runs} runs "
          f"(min {min(times):.2f}, max {max(times):.2f}); "
          f"{'the same accuracies and verdicts every run' if len(outcomes) == 1 else 'RUNS DIFFER'}")


if __name__ == "__main__":
    main()
