"""The adaptive attacker's two searches side by side: the exhaustive grid (every setting of each
attack's grid, at the thief's full and a third of its data share) against the tuner (Optuna's TPE
sampler over each attack's space with a Hyperband pruner), given about half the grid's trials.

For each scheme x attack x strength x seed it reports the strongest setting each search found (a
removal first, then the least evidence with accuracy kept) and which was stronger, and the wall
time of each search. Both run in one bench directory, so the grid's cells are cached and the
tuner's cells show them beside their own (results.md, plots/search-<scheme>.png).

    python3 benchmarks/bench_search.py [--schemes adi,noise,uchida,dark-knowledge]
        [--attacks ftal,rtal,prune-tune,distill,regularised] [--seeds 3] [--out /tmp/nnmark-search]

The tuner's trials per cell are its default, half the grid's settings for that attack (at least 2). Victims
are trained once (20 epochs, the bench's default; ``--victim-epochs``) and shared by both searches; their time is not
counted in either.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _papers import machine

from nnmark.reporting.robustness import stronger_search
from nnmark.training.presets import preset
from nnmark.workflows.bench import BenchConfig, _grid, run_bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schemes", default="adi,noise,uchida,dark-knowledge")
    parser.add_argument("--attacks", default="ftal,rtal,prune-tune,distill,regularised")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--data", default="digits")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--victim-epochs", type=int, default=20)
    parser.add_argument("--out", default="/tmp/nnmark-search")
    args = parser.parse_args()
    schemes, attacks = args.schemes.split(","), args.attacks.split(",")
    common = dict(quick=True, seeds=args.seeds, adaptive=True, dataset=args.data, victim=preset("small-data", epochs=args.victim_epochs))

    started = time.perf_counter()
    run_bench(BenchConfig(schemes, ["quantize:8"], quick=True, dataset=args.data,
                          victim=common["victim"]), args.out, data_dir=args.data_dir)  # victims only
    victims_seconds = time.perf_counter() - started

    rows, seconds = [], {"grid": 0.0, "tuner": 0.0}
    for attack in attacks:
        grid_size = len(_grid(attack, BenchConfig(schemes, [attack], **common)))
        timed = {}
        for search in ("grid", "tuner"):  # the tuner at its default budget: half the grid's settings
            started = time.perf_counter()
            timed[search] = run_bench(BenchConfig(schemes, [attack], search=search, **common), args.out,
                                      data_dir=args.data_dir)
            seconds[search] += time.perf_counter() - started
            print(f"{attack}: {search} {time.perf_counter() - started:.0f} s", flush=True)
        for record in timed["tuner"]["records"]:
            grid = record.get("grid_best")
            if grid is None:
                continue
            rows.append({"scheme": record["scheme"], "attack": attack, "strength": record["strength"],
                         "seed": record["seed"], "grid_settings": grid_size, "trials": record["trials"],
                         "pruned": record["pruned"],
                         "tuner": {k: record[k] for k in ("evidence", "test_accuracy", "removed", "keeps_accuracy")},
                         "grid": {k: grid[k] for k in ("evidence", "test_accuracy", "removed", "keeps_accuracy")},
                         "stronger": stronger_search(record, grid), "tuned": record["tuned"]})

    print(f"\n{machine()}; victims trained in {victims_seconds:.0f} s (not counted)")
    print(f"grid: {seconds['grid']:.0f} s; tuner: {seconds['tuner']:.0f} s "
          f"({seconds['tuner'] / max(seconds['grid'], 1e-9):.2f} of the grid's time)")
    print("\n| scheme | attack | strength | seed | grid: evidence %, acc %, removed | tuner (trials, pruned) | stronger |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        g, t = row["grid"], row["tuner"]
        strength = "as named" if row["strength"] is None else f"{row['strength']:g}"
        print(f"| {row['scheme']} | {row['attack']} | {strength} | {row['seed']} | "
              f"{100 * g['evidence']:.0f}, {100 * g['test_accuracy']:.1f}, {'yes' if g['removed'] else 'no'} "
              f"({row['grid_settings']}) | {100 * t['evidence']:.0f}, {100 * t['test_accuracy']:.1f}, "
              f"{'yes' if t['removed'] else 'no'} ({row['trials']}, {row['pruned']}) | {row['stronger']} |")
    tally = {k: sum(r["stronger"] == k for r in rows) for k in ("tuner", "same", "grid")}
    removed = {k: sum(r[k]["removed"] for r in rows) for k in ("grid", "tuner")}
    print(f"\ncells: {len(rows)}; stronger: tuner {tally['tuner']}, same {tally['same']}, grid {tally['grid']}; "
          f"mark removed in {removed['grid']} cells by the grid, {removed['tuner']} by the tuner")
    Path(args.out, "search.json").write_text(json.dumps({"rows": rows, "seconds": seconds,
                                                         "victims_seconds": victims_seconds}, indent=1))


if __name__ == "__main__":
    main()
