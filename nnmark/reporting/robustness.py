"""The robustness benchmark for people: a Markdown table like the papers' robustness tables, and
plots of watermark evidence and accuracy against attack strength, one panel per attack."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from nnmark.extras import require


def _pct(value: float, ci: float = 0.0) -> str:
    return f"{100 * value:.1f}" + (f"±{100 * ci:.1f}" if ci else "")


def _strength(row: dict[str, Any]) -> str:
    if row["strength"] is not None:
        return f"{row['strength']:g}"
    # a cell without a sweep: a chain, or one attack at the strength its name fixes
    return "chain" if "+" in row["attack"] else row["attack"].rpartition(":")[2] or "—"


def settings_text(row: dict[str, Any], attacker_fraction: float, searched_only: bool = False) -> str:
    """The hyperparameters a row ran with, compactly (its thief data share where it was not the
    whole); ``searched_only``: just those the adaptive attacker varies."""
    searched = None
    if searched_only and "+" not in row["attack"]:
        from nnmark.attacks.base import get_attack

        attack = get_attack(row["attack"].split(":")[0])
        searched = set(attack.search) | set(attack.space or {})
    shown = lambda v: f"{v:.3g}" if isinstance(v, float) else v  # noqa: E731 - a tuner's draw has many digits
    text = ", ".join(f"{k}={shown(v)}" for step in row.get("settings") or [] for k, v in step.items()
                     if searched is None or k in searched)
    if row.get("data_fraction") not in (None, attacker_fraction):
        text += ("; " if text else "") + f"thief data {100 * row['data_fraction']:.0f}%"
    return text


def removal_matrix(results: dict[str, Any]) -> list[str]:
    """Attack x scheme: the weakest strength that removed the mark (with the setting that did, in
    an adaptive run, and the share of seeds it did it for), else whether it survived (and where
    the mark was lost only together with the model's accuracy)."""
    config = results["config"]
    schemes = list(results["victims"])
    by_cell: dict[tuple[str, str], list[dict]] = {}
    for row in results["summary"]:
        by_cell.setdefault((row["attack"], row["scheme"]), []).append(row)
    attacks = list(dict.fromkeys([row["attack"] for row in results["summary"]] +
                                 [r["attack"] for r in results.get("not_applicable") or []]))
    inapplicable = {(r["scheme"], r["attack"]) for r in results.get("not_applicable") or []}
    lines = ["| attack | " + " | ".join(schemes) + " |", "|---|" + "---|" * len(schemes)]
    for attack in attacks:
        cells = []
        for scheme in schemes:
            rows = by_cell.get((attack, scheme), [])
            removed = [r for r in rows if r["removed_rate"] > 0]
            lost = [r for r in rows if r["owned_rate"] < 1 and r["removed_rate"] == 0]
            label = lambda r: "chain" if r["strength"] is None else f"{r['strength']:g}"  # noqa: E731
            if not results["victims"][scheme]["owned"]:
                cells.append("— (victim not owned)")
            elif not rows and (scheme, attack) in inapplicable:
                cells.append("n/a (see below)")
            elif removed:
                r = removed[0]
                how = [f"{r['removed_rate']:.0%} of {r['seeds']} seeds"] if r["seeds"] > 1 else []
                setting = settings_text(r, config["attacker_fraction"], searched_only=True)
                if config.get("adaptive") and setting:
                    how.append(setting)
                if r.get("removed_test_accuracy") is not None:
                    how.append(f"acc {_pct(r['removed_test_accuracy'], r['removed_test_accuracy_ci95'])}%"
                               + (" where removed" if r["removed_rate"] < 1 else ""))
                else:
                    how.append(f"acc {_pct(r['test_accuracy'], r['test_accuracy_ci95'])}%")
                cells.append(f"**removed** at {label(r)} ({'; '.join(how)})")
            elif lost:
                r = lost[0]
                cells.append(f"survives; lost at {label(r)} only with acc {100 * r['test_accuracy']:.0f}%")
            else:
                cells.append("survives" if rows else "—")
        lines.append(f"| {attack} | " + " | ".join(cells) + " |")
    return lines


def stronger_search(tuner: dict[str, Any], grid: dict[str, Any]) -> str:
    """Which search's best record is the stronger thief ("tuner", "grid" or "same"), in the order
    both searches pick their best by (``nnmark.attacks.space.thief_score``)."""
    from nnmark.attacks.space import record_score

    a, b = (record_score(tuner), -tuner["test_accuracy"]), (record_score(grid), -grid["test_accuracy"])
    if abs(a[0] - b[0]) < 1e-9 and abs(a[1] - b[1]) < 1e-9:
        return "same"
    return "tuner" if a < b else "grid"


def search_comparison(results: dict[str, Any]) -> list[str]:
    """Per scheme, attack and strength: the tuner's best setting beside the grid's, where the bench
    directory also holds a whole grid run of the cell (``nnmark bench --adaptive --search grid``)."""
    lines = ["## The tuner's best beside the grid's", ""]
    compared = [r for r in results["records"] if r.get("search") == "tuner" and r.get("grid_best")]
    if not compared:
        return lines + ["No cell has a grid run in this bench directory to compare with: run the same bench with "
                        "`--search grid` into it, then this one again (its cells are cached).", ""]
    fraction = results["config"]["attacker_fraction"]
    lines += ["Per cell and seed. Evidence is the share of the key the attacked model still answers; the stronger "
              "thief is the one that removed the mark (with less evidence left), else kept accuracy with less evidence.",
              "", "| scheme | attack | strength | seed | tuner: evidence %, acc % | tuner's setting "
              "| grid: evidence %, acc % | grid's setting | stronger |", "|---|---|---|---|---|---|---|---|---|"]
    for row in compared:
        grid = row["grid_best"]
        tuner_setting = settings_text(row, fraction, searched_only=True) or "—"
        grid_setting = settings_text(grid | {"attack": row["attack"]}, fraction, searched_only=True) or "—"
        mark = lambda removed: " **removed**" if removed else ""  # noqa: E731
        lines.append(f"| {row['scheme']} | {row['attack']} | {_strength(row)} | {row['seed']} | "
                     f"{_pct(row['evidence'])}, {_pct(row['test_accuracy'])}{mark(row['removed'])} | {tuner_setting} "
                     f"({row['trials']} trials, {row['pruned']} pruned) | {_pct(grid['evidence'])}, "
                     f"{_pct(grid['test_accuracy'])}{mark(grid.get('removed'))} | {grid_setting} "
                     f"({grid['settings_tried']} settings) | {stronger_search(row, grid)} |")
    return lines + [""]


def markdown_table(results: dict[str, Any]) -> str:
    config = results["config"]
    lines = [
        f"# Robustness on `{config['dataset']}`",
        "",
        f"Attacker data: {100 * config['attacker_fraction']:.0f}% of the training set; seeds per cell: "
        f"{config['seeds']}; α = {config['alpha']:g}. *Removed* means the verdict flipped to not owned "
        f"while test accuracy stayed within {100 * config['tolerance']:.0f} points of the victim's.",
        "",
        "| scheme | victim acc | evidence | verdict |",
        "|---|---|---|---|",
    ]
    for scheme, victim in results["victims"].items():
        lines.append(f"| {scheme} | {_pct(victim['test_accuracy'])}% | {victim['matches']}/{victim['total']} "
                     f"| {'owned' if victim['owned'] else 'not owned'} |")
    lines += ["", "## What removes what", "", *removal_matrix(results), "", "## Every cell", "",
              "| scheme | attack | strength | test acc % | evidence % | owned | removed | settings |",
              "|---|---|---|---|---|---|---|---|"]
    tuned = config.get("adaptive") and config.get("search", "grid") == "tuner"
    if config.get("adaptive"):
        lines[lines.index("## Every cell") + 1:lines.index("## Every cell") + 1] = [
            "", ("Adaptive: each cell is the strongest setting a tuner found in "
                 + (f"{config['trials']} trials" if config.get("trials") else "half as many trials as the attack's grid "
                    "has settings (at least 2)") + " over "
                 "the attack's search space (Optuna's TPE sampler; a Hyperband pruner stopped trials whose evidence "
                 "after an epoch was hopeless). `settings` shows the one reported, the trials run and how many "
                 "were pruned. **A mark that survives here survived a sample of settings, not every one:** on "
                 "nnmark's digits slice (docs/robustness.md, \"The tuner beside the grid\") the tuner at half the "
                 "grid's trials missed removals the exhaustive grid found. Before calling a mark robust, run the "
                 "same bench with `--search grid`, or with at least as many `--trials` as the grid has settings."
                 if tuned else
                 "Adaptive: each cell is the strongest of every setting in the attack's search grid "
                 "(`settings` shows the one reported and how many were tried)."), ""]
    for row in results["summary"]:
        strength = "chain" if row["strength"] is None else f"{row['strength']:g}"
        owned = f"{row['owned_rate']:.0%}" if row["seeds"] > 1 else ("yes" if row["owned_rate"] else "no")
        removed = f"{row['removed_rate']:.0%}" if row["seeds"] > 1 else ("**yes**" if row["removed_rate"] else "no")
        settings = settings_text(row, config["attacker_fraction"]) or "—"
        if row.get("search") == "tuner":
            settings += f" (best of {row['settings_tried']} trials, {row.get('pruned') or 0} pruned)"
        elif row.get("settings_tried"):
            settings += f" (best of {row['settings_tried']})"
        lines.append(f"| {row['scheme']} | {row['attack']} | {strength} | "
                     f"{_pct(row['test_accuracy'], row['test_accuracy_ci95'])} | "
                     f"{_pct(row['evidence'], row['evidence_ci95'])} | {owned} | {removed} | {settings} |")
    if tuned:
        lines += ["", *search_comparison(results)]
    lines += ["", "## Attacks and what the thief needs", "", "| attack | what it does | threat model | settings (defaults) | adaptive grid |",
              "|---|---|---|---|---|"]
    from nnmark.attacks.base import TRAIN_SETTINGS, get_attack

    for name in dict.fromkeys(step.split(":")[0] for spec in results["config"]["attacks"] for step in spec.split("+")):
        attack = get_attack(name)
        shown = lambda k, v: v if v is not None else "recipe" if k in TRAIN_SETTINGS else "victim's"  # noqa: E731
        defaults = ", ".join(f"{k}={shown(k, v)}" for k, v in attack.settings.items()) or "—"
        grid = "; ".join(f"{k} ∈ {{{', '.join(str(x) for x in v)}}}" for k, v in attack.search.items()) or "—"
        if config.get("adaptive") and attack.uses_training_data and config.get("search_fractions"):
            shares = [config["attacker_fraction"], *config["search_fractions"]]
            grid += f"; thief data ∈ {{{', '.join(f'{100 * f:.0f}%' for f in dict.fromkeys(shares))}}}"
        if tuned:
            space = attack.search_space(config.get("transfer_data") is not None) if "+" not in name else {}
            grid += " · tuner: " + ("; ".join(f"{k} {d.describe()}" for k, d in space.items()) or "—")
            if attack.uses_training_data and config.get("search_fractions"):
                grid += (f"; thief data uniform [{100 * min(config['search_fractions']):.0f}%, "
                         f"{100 * config['attacker_fraction']:.0f}%]")
        lines.append(f"| {name} | {attack.summary} | {attack.threat_model} | {defaults} | {grid} |")
    errors = results.get("errors") or []
    if errors:
        lines += ["", "## Cells that failed", "", "Each raised an error the bench recorded and went on; a re-run tries "
                  "them again (finished cells are cached).", "", "| scheme | attack | strength | error |",
                  "|---|---|---|---|"]
        lines += [f"| {r['scheme']} | {r['attack']} | {_strength(r)} | {r['error']} |" for r in errors]
    skipped = results.get("not_applicable") or []
    if skipped:
        lines += ["", "## Not applicable", ""]
        reasons = dict.fromkeys((r["scheme"], r["attack"], r["not_applicable"]) for r in skipped)  # once per cell kind
        lines += [f"- {scheme} / {attack}: {reason}" for scheme, attack, reason in reasons]
    return "\n".join(lines) + "\n"


def _pyplot():
    matplotlib = require("matplotlib", "plots", "the bench's plots")
    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def _save(plt, figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_results(results: dict[str, Any], directory: str | Path) -> list[Path]:
    """One PNG per scheme: a panel per single-step attack with evidence (fraction of matches) and
    test accuracy against strength; the dashed line is the ownership threshold at each point."""
    plt = _pyplot()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for scheme, victim in results["victims"].items():
        rows = [r for r in results["summary"] if r["scheme"] == scheme and r["strength"] is not None]
        attacks = list(dict.fromkeys(r["attack"] for r in rows))
        if not attacks:
            continue
        columns = min(4, len(attacks))
        grid_rows = (len(attacks) + columns - 1) // columns
        figure, axes = plt.subplots(grid_rows, columns, figsize=(3.6 * columns, 2.9 * grid_rows), squeeze=False)
        for axis in axes.flat[len(attacks):]:
            axis.set_visible(False)
        for axis, attack in zip(axes.flat, attacks):
            points = sorted((r for r in rows if r["attack"] == attack), key=lambda r: r["strength"])
            x = [r["strength"] for r in points]
            axis.errorbar(x, [r["evidence"] for r in points], yerr=[r["evidence_ci95"] for r in points],
                          marker="o", label="watermark evidence", color="tab:blue")
            axis.errorbar(x, [r["test_accuracy"] for r in points], yerr=[r["test_accuracy_ci95"] for r in points],
                          marker="s", label="test accuracy", color="tab:green")
            # The threshold can differ per point: a null measured on the suspect itself moves with it.
            axis.plot(x, [r["threshold_fraction"] for r in points], linestyle="--", color="tab:red",
                      linewidth=1, marker="_", label="ownership threshold")
            for r in points:
                if r["removed_rate"] > 0:
                    axis.scatter([r["strength"]], [r["evidence"]], s=120, facecolors="none",
                                 edgecolors="tab:red", zorder=5)
            axis.set_title(attack)
            axis.set_ylim(-0.05, 1.05)
            axis.grid(alpha=0.3)
        axes.flat[0].legend(fontsize=7, loc="lower left")
        figure.suptitle(f"{scheme}: evidence and accuracy after each attack\n"
                        f"victim {100 * victim['test_accuracy']:.1f}%; red ring = removed", fontsize=10)
        written.append(_save(plt, figure, directory / f"{scheme}.png"))
    return written


def plot_search(results: dict[str, Any], directory: str | Path) -> list[Path]:
    """One PNG per scheme whose tuned cells have a grid run beside them: per attack cell (first seed), the
    evidence and accuracy after the tuner's best setting and after the grid's (bars: evidence;
    dots: accuracy; a hatched bar: that search removed the mark)."""
    plt = _pyplot()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for scheme in results["victims"]:
        rows = [r for r in results["records"] if r["scheme"] == scheme and r.get("grid_best") and r["seed"] == 0]
        if not rows:
            continue
        labels = [f"{r['attack']} @{_strength(r)}" if r["strength"] is not None else r["attack"] for r in rows]
        figure, axis = plt.subplots(figsize=(max(4.0, 1.1 * len(rows) + 1.5), 3.4))
        width = 0.38
        for offset, name, color, pick in ((-width / 2, "tuner", "tab:purple", lambda r: (r, r["removed"])),
                                          (width / 2, "grid", "tab:gray",
                                           lambda r: (r["grid_best"], bool(r["grid_best"].get("removed"))))):
            points = [pick(r) for r in rows]
            x = [i + offset for i in range(len(rows))]
            bars = axis.bar(x, [p["evidence"] for p, _ in points], width, color=color, label=f"{name}: evidence")
            for bar, (_, removed) in zip(bars, points):
                if removed:
                    bar.set_hatch("//")
            axis.scatter(x, [p["test_accuracy"] for p, _ in points], color=color, edgecolors="black", zorder=5,
                         marker="o", s=30, label=f"{name}: accuracy")
        threshold = max(r["threshold"] / r["total"] for r in rows)
        axis.axhline(threshold, linestyle="--", color="tab:red", linewidth=1, label="ownership threshold")
        axis.set_xticks(range(len(rows)), labels, rotation=30, ha="right", fontsize=8)
        axis.set_ylim(0, 1.05)
        axis.legend(fontsize=6, loc="upper right", ncol=2)
        axis.set_title(f"{scheme}: the tuner's best setting beside the grid's (hatched: removed)", fontsize=9)
        written.append(_save(plt, figure, directory / f"search-{scheme}.png"))
    return written
