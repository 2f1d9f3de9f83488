"""``nnmark attack`` and ``nnmark bench``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from nnmark.cli.common import DataDirOption, command, console, err_console, progress_bars


@command()
def attack(
    model: Path = typer.Option(..., "--model", help="Victim model directory."),
    key: Path = typer.Option(..., "--key", help="The victim's key, to measure the evidence before and after."),
    attack_spec: str = typer.Option(..., "--attack", help="Attack name or chain, e.g. prune:0.5+ftal:5."),
    strength: Optional[float] = typer.Option(None, "--strength", help="Strength of a single attack."),
    data: str = typer.Option("digits", "--data", help="Dataset the attacker draws from."),
    data_dir: Optional[Path] = DataDirOption,
    fraction: float = typer.Option(0.3, "--fraction", help="Fraction of the training set the attacker holds."),
    transfer_data: Optional[str] = typer.Option(None, "--transfer-data",
                                                help="A dataset of another domain (e.g. cifar10, from --data-dir) whose "
                                                     "training images the thief queries in knockoff extraction."),
    seed: int = typer.Option(0, "--seed"),
    alpha: float = typer.Option(1e-6, "--alpha"),
    null_file: Optional[Path] = typer.Option(None, "--null", help="Null measured on control models (schemes without an exact one)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the attacked model here."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
    as_json: bool = typer.Option(False, "--json", help="Print before/after as JSON."),
) -> None:
    """Apply a removal attack (or chain) to a model and report accuracy and evidence before and after."""
    from nnmark.api import format_p_value
    from nnmark.workflows.attack import attack_model_directory

    with progress_bars() as progress:
        report = attack_model_directory(model, key, attack_spec, strength=strength, data=data, data_dir=data_dir,
                                        fraction=fraction, transfer_data=transfer_data, seed=seed, alpha=alpha,
                                        null_file=null_file, out=out, force=force, progress=progress)
    keep = ("test_accuracy", "owned", "p_value", "matches", "total")
    rows = {name: {k: v for k, v in judged.to_dict().items() if k in keep}
            for name, judged in (("before", report.outcome.before), ("after", report.outcome.after))}
    if as_json:
        print(json.dumps({"attack": attack_spec, "strength": strength, **rows}, indent=2))
        return
    for name, row in rows.items():
        console.print(f"{name:>6}: test acc {100 * row['test_accuracy']:.1f}%, evidence {row['matches']}/"
                      f"{row['total']}, p {format_p_value(row['p_value'])}, {'OWNED' if row['owned'] else 'not owned'}")
    if report.path is not None:
        console.print(f"wrote {report.path}")


@command()
def bench(
    schemes: str = typer.Option("adi,uchida", "--schemes", help="Comma-separated scheme names, or 'all'."),
    attacks: Optional[str] = typer.Option(None, "--attacks",
                                          help="Comma-separated attacks or chains (a+b+c); default: the standard set."),
    data: str = typer.Option("digits", "--data"),
    data_dir: Optional[Path] = DataDirOption,
    model: str = typer.Option("small-cnn", "--model", help="Victim architecture."),
    epochs: int = typer.Option(20, "--epochs", help="Victim training epochs."),
    fraction: float = typer.Option(0.3, "--fraction", help="Fraction of the training set the attacker holds."),
    transfer_data: Optional[str] = typer.Option(None, "--transfer-data",
                                                help="A dataset of another domain (e.g. cifar10, from --data-dir) whose "
                                                     "training images the thief queries in knockoff extraction."),
    seeds: int = typer.Option(1, "--seeds", help="Repeat each cell over this many seeds (mean and 95% CI)."),
    tolerance: float = typer.Option(0.05, "--tolerance", help="Accuracy drop an attack may cause and still count."),
    alpha: float = typer.Option(1e-6, "--alpha"),
    quick: bool = typer.Option(False, "--quick", help="A small sweep: a couple of strengths per attack."),
    adaptive: bool = typer.Option(False, "--adaptive", help="Per cell, search each attack's settings (learning rates, "
                                                            "the thief's data share, ...); report the strongest."),
    search: str = typer.Option("tuner", "--search", help="tuner (Optuna over each attack's space, hopeless trials "
                                                         "stopped early) or grid (every setting of its grid)."),
    trials: Optional[int] = typer.Option(None, "--trials", help="Tuner trials per cell (default: half the "
                                                                 "settings of the attack's grid, at least 2)."),
    storage: Optional[str] = typer.Option(None, "--storage", help="The tuner's studies: an SQLAlchemy URL (default: "
                                                                  "an SQLite file in OUT; PostgreSQL for many machines)."),
    executor: str = typer.Option("local", "--executor", help="local (this process) or ray (tasks on a local Ray, "
                                                             "or the cluster at --address)."),
    address: Optional[str] = typer.Option(None, "--address", help="A Ray cluster's address (with --executor ray)."),
    plugin: Optional[list[str]] = typer.Option(None, "--plugin", help="A module registering attacks or schemes of "
                                                                      "your own, imported in every worker (repeatable)."),
    out: Path = typer.Option(..., "--out", help="Bench directory (reused as a cache across runs)."),
    force: bool = typer.Option(False, "--force", help="Write into a non-empty directory that is not a bench."),
) -> None:
    """Attack a watermarked victim per scheme over strength sweeps; write results.json, results.md, plots.

    To share the work among processes or machines, use `--executor ray` (it does not run under torchrun).
    """
    from nnmark.workflows.bench import bench_to_directory

    with progress_bars() as progress:
        results = bench_to_directory(out, schemes=schemes, attacks=attacks, data=data, data_dir=data_dir,
                                     architecture=model, epochs=epochs, fraction=fraction, transfer_data=transfer_data,
                                     seeds=seeds, tolerance=tolerance, alpha=alpha, quick=quick, adaptive=adaptive,
                                     search=search, trials=trials, storage=storage, executor=executor, address=address,
                                     plugins=tuple(plugin or ()), force=force, progress=progress,
                                     log=lambda message: err_console.print(f"[dim]{message}[/]"))
    removed = [r for r in results["summary"] if r["removed_rate"] > 0]
    console.print(f"{len(results['records'])} records ({results['cache']['computed']} computed, "
                  f"{results['cache']['reused']} reused from cache)")
    for row in results["errors"]:
        console.print(f"[bold red]error[/] in {row['scheme']} / {row['attack']}: {row['error']}")
    for row in removed:
        strength = "chain" if row["strength"] is None else f"{row['strength']:g}"
        console.print(f"removed: {row['scheme']} by {row['attack']} at {strength} "
                      f"(accuracy {100 * row['test_accuracy']:.1f}%)")
    if not removed:
        console.print("no attack removed any watermark within the accuracy tolerance")
    console.print(f"wrote {out}/results.json, results.md and plots/")
