"""The tables of docs/robustness.md from one bench directory that holds both searches: each attack x
scheme cell says what the tuner found and what the exhaustive grid found, so a reader sees where
they differ instead of trusting either alone.

    nnmark bench --schemes all --quick --adaptive --search grid --seeds 3 --out robustness
    nnmark bench --schemes all --quick --adaptive --seeds 3 --out robustness   # the tuner; grid cells cached
    python3 benchmarks/robustness_tables.py robustness/results.json

It reads the tuned run's results.json, whose records carry the grid's best setting beside each
cell (``grid_best``), and prints Markdown: the victims, then per attack x owned scheme the weakest
strength that removed the mark under each search, the share of seeds, and the accuracy kept.
"""
from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path


def victims_table(results: dict) -> list[str]:
    lines = ["| scheme | victim acc | evidence | p-value | verdict |", "|---|---|---|---|---|"]
    for scheme, victim in results["victims"].items():
        verdict = "owned" if victim["owned"] else "**not owned**"
        lines.append(f"| {scheme} | {100 * victim['test_accuracy']:.1f}% | {victim['matches']}/{victim['total']} | "
                     f"{victim['p_value']:.3g} ({victim['null_kind']}) | {verdict} |")
    return lines


def _outcome(rows: list[tuple[float | None, bool, bool, float]]) -> tuple[str, bool]:
    """The cell's text and whether it was removed; rows: per seed (strength, removed, owned, accuracy),
    over every strength of the cell."""
    by_strength: dict = defaultdict(list)
    for strength, removed, owned, accuracy in rows:
        by_strength[strength].append((removed, owned, accuracy))
    for strength in by_strength:  # the sweep's order, weakest first (for some attacks a smaller number is stronger)
        seeds = by_strength[strength]
        removed = [acc for was_removed, _, acc in seeds if was_removed]
        if removed:
            label = "as given" if strength is None else f"{strength:g}"  # a chain or a spec with its strength
            return f"**at {label}**, {len(removed)}/{len(seeds)}, {100 * statistics.mean(removed):.0f}%", True
    lost = [acc for seeds in by_strength.values() for removed, owned, acc in seeds if not owned]
    if lost:
        return f"survives (lost only at {100 * max(lost):.0f}%)", False
    return "survives", False


def search_matrix(results: dict) -> tuple[list[str], dict[str, int]]:
    owned = [s for s, v in results["victims"].items() if v["owned"]]
    tuner: dict = defaultdict(list)
    grid: dict = defaultdict(list)
    for r in results["records"]:
        if r.get("search") != "tuner" or "error" in r or "not_applicable" in r or r["scheme"] not in owned:
            continue
        key = (r["attack"], r["scheme"])
        tuner[key].append((r["strength"], bool(r["removed"]), bool(r["owned"]), r["test_accuracy"]))
        best = r.get("grid_best")
        if best is not None:
            grid[key].append((r["strength"], bool(best.get("removed")), bool(best.get("owned")),
                              best["test_accuracy"]))
    attacks = list(dict.fromkeys(a for a, _ in tuner))
    counts = {"pairs": 0, "both": 0, "tuner only": 0, "grid only": 0}
    lines = ["| attack | " + " | ".join(owned) + " |", "|---|" + "---|" * len(owned)]
    for attack in attacks:
        cells = []
        for scheme in owned:
            if (attack, scheme) not in tuner:
                cells.append("n/a")
                continue
            t, t_removed = _outcome(tuner[(attack, scheme)])
            g, g_removed = _outcome(grid[(attack, scheme)]) if grid.get((attack, scheme)) else ("not run", False)
            counts["pairs"] += 1
            if t_removed or g_removed:
                counts["both" if t_removed and g_removed else "tuner only" if t_removed else "grid only"] += 1
            cells.append(t if t == g else f"T {t}; G {g}")
        lines.append(f"| {attack} | " + " | ".join(cells) + " |")
    return lines, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="results.json of the tuned run (grid run cached beside it)")
    args = parser.parse_args()
    results = json.loads(args.results.read_text())
    if results["config"].get("search") != "tuner":
        raise SystemExit(f"{args.results}: field 'config.search': expected the tuned run's results "
                         f"(grid cells cached beside it), got {results['config'].get('search')!r}")
    print("\n".join(victims_table(results)), end="\n\n")
    lines, counts = search_matrix(results)
    print("\n".join(lines), end="\n\n")
    print(f"attack x scheme pairs: {counts['pairs']}; removed by both searches: {counts['both']}; "
          f"by the tuner only: {counts['tuner only']}; by the grid only: {counts['grid only']}")


if __name__ == "__main__":
    main()
