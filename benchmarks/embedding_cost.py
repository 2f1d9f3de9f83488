"""What each scheme costs in test accuracy: the marked model (or, for a mark carried by the API, the
API's answers) against an unmarked model of the same recipe and seed (docs/robustness.md).

Victims are made exactly as the bench makes them (``nnmark.workflows.bench.Bench.victim``; cached
in ``--out``, so a bench directory can be reused), one per scheme and seed; the unmarked model is
``train_model`` with the same preset and seed and no key. The cost is the paired difference, its
mean over seeds with a 95% Student-t interval.

    python3 benchmarks/embedding_cost.py --seeds 3 --out /tmp/embedding-cost
"""
from __future__ import annotations

import argparse
import time

from nnmark.api import train_model
from nnmark.data import load_dataset
from nnmark.models.inference import evaluate
from nnmark.schemes.base import SCHEMES
from nnmark.training.presets import preset
from nnmark.workflows.bench import Bench, BenchConfig, mean_ci, prepare_output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--schemes", default="all")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20, help="Victim training epochs (the bench's default).")
    parser.add_argument("--out", required=True, help="Bench directory to cache the victims in.")
    args = parser.parse_args()
    started = time.perf_counter()
    schemes = SCHEMES.names() if args.schemes == "all" else args.schemes.split(",")
    data = load_dataset(args.dataset, args.data_dir)
    prepare_output(args.out, force=False)
    rows: dict[str, list[tuple[float, float]]] = {name: [] for name in schemes}
    for seed in range(args.seeds):
        recipe = preset("small-data", seed=seed, epochs=args.epochs)
        plain = train_model(data, recipe, architecture="small-cnn").test_accuracy
        bench = Bench(BenchConfig(schemes, [], dataset=args.dataset, victim=recipe), args.out, args.data_dir)
        for name in schemes:
            victim = bench.victim(name)
            marked = evaluate(victim.model, data.test_x, data.test_y)  # the API's answers, for an API mark
            rows[name].append((plain, marked))
            print(f"seed {seed}: {name}: unmarked {100 * plain:.1f}%, marked {100 * marked:.1f}%", flush=True)
    print()
    print(f"{data.name}, small-cnn, `small-data` preset ({args.epochs} epochs), {args.seeds} seed(s); "
          f"{len(data.test_y)} test images")
    print()
    print("| scheme | unmarked | marked (as served) | cost, points (95% CI) |")
    print("|---|---|---|---|")
    for name, pairs in rows.items():
        plain, _ = mean_ci([100 * p for p, _ in pairs])
        marked, _ = mean_ci([100 * m for _, m in pairs])
        cost, half = mean_ci([100 * (p - m) for p, m in pairs])
        interval = f" ± {half:.1f}" if len(pairs) > 1 else " (1 seed: no interval)"
        print(f"| {name} | {plain:.1f}% | {marked:.1f}% | {cost:+.1f}{interval} |")
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
