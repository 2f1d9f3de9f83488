"""How often each per-cell statistic of dark-knowledge's ranks reaches alpha, for simulated thieves
(docs/schemes/dark-knowledge.md, "Why Fisher's points").

Each simulated thief has n cells of M candidates. Two kinds of partial learning:
- ``mix q``: a cell is learned (keyed class first) with probability q, else its rank is uniform;
- ``shift g``: every cell's rank is geometric with parameter g, cut at M (the keyed class drifts
  up everywhere, but rarely all the way).
Every statistic is the sum of per-cell points with the exact null of that sum
(``nnmark.verification.points_tail``): first places only (the count before 2026-12-02), Fisher's
points (the verdict's), the rank sum, and top-2 places.

    python3 benchmarks/rank_statistic_power.py --thieves 4000
"""
from __future__ import annotations

import argparse

import numpy as np

from nnmark.schemes.dark_knowledge import rank_points
from nnmark.verification.stats import points_tail


def statistics(candidates: int) -> dict[str, np.ndarray]:
    ranks = np.arange(1, candidates + 1)
    return {"first places": (ranks == 1).astype(np.int64), "Fisher's points": rank_points(candidates),
            "rank sum": candidates - ranks, "top-2 places": (ranks <= 2).astype(np.int64)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--thieves", type=int, default=4000, help="Simulated thieves per row.")
    parser.add_argument("--alpha", type=float, default=1e-6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    generator = np.random.default_rng(args.seed)
    cases = [(10, 9, "class cells, 10 classes"), (56, 8, "runner-up cells, 56 of them")]
    print(f"share of {args.thieves} simulated thieves judged owned at alpha = {args.alpha:g}")
    for cells, candidates, label in cases:
        scales = statistics(candidates)
        tails = {name: points_tail(cells, scale)[0] for name, scale in scales.items()}
        print(f"\n{label} ({candidates} candidates)\n")
        print("| thief | " + " | ".join(scales) + " |")
        print("|---|" + "---|" * len(scales))
        for kind, value in [("mix", 0.5), ("mix", 0.6), ("mix", 0.7), ("shift", 0.3), ("shift", 0.5), ("shift", 0.7)]:
            if kind == "mix":
                learned = generator.random((args.thieves, cells)) < value
                ranks = np.where(learned, 1, generator.integers(1, candidates + 1, (args.thieves, cells)))
            else:
                ranks = np.minimum(generator.geometric(value, (args.thieves, cells)), candidates)
            shares = []
            for name, scale in scales.items():
                totals = scale[ranks - 1].sum(1)
                shares.append(np.mean([tails[name](int(t)) <= args.alpha for t in totals]))
            print(f"| {kind} {value:g} | " + " | ".join(f"{100 * s:.1f}%" for s in shares) + " |")


if __name__ == "__main__":
    main()
