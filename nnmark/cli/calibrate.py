"""``nnmark calibrate``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from nnmark.cli.common import DataDirOption, command, console, progress_bars


@command()
def calibrate(
    key: Path = typer.Option(..., "--key", help="Key directory."),
    models: int = typer.Option(20, "--models", help="Train this many independent models without the key, "
                                                    "cycling through several architectures, widths and learning rates."),
    control: Optional[list[Path]] = typer.Option(None, "--control", help="Also use this model directory made without the key (repeatable)."),
    data: str = typer.Option("digits", "--data", help="Dataset the controls are trained on."),
    data_dir: Optional[Path] = DataDirOption,
    epochs: int = typer.Option(10, "--epochs", help="Training epochs of each control."),
    seed: int = typer.Option(100, "--seed", help="Seed of the first control (then +1 each)."),
    alpha: float = typer.Option(1e-6, "--alpha"),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the measured null (for verify --null) and the study as JSON."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Measure the null on models made without the key, and test the verifier's error rate against them."""
    from nnmark.workflows.controls import calibrate_key

    with progress_bars() as progress:
        report = calibrate_key(key, models=models, controls=control, data=data, data_dir=data_dir, epochs=epochs,
                               seed=seed, alpha=alpha, out=out, force=force, progress=progress)
    study = report.study
    if as_json:
        print(json.dumps(study, indent=2))
        return
    for row in study["controls"]:
        accuracy = "" if row["test_accuracy"] is None else f"  acc {100 * row['test_accuracy']:.1f}%"
        console.print(f"{row['model']}{accuracy}: {row['matches']}/{row['total']}  p {row['p_value']:.3g}  "
                      f"{'[bold red]ACCUSED[/]' if row['owned'] else 'not owned'}")
    size = len(study["controls"])
    low, high = study["false_positive_rate_ci95"]
    console.print(f"{study['judged_by']}")
    console.print(f"accused at alpha {alpha:g}: {study['accused']}/{size} (exact 95% interval {low:.3g}-{high:.3g}); "
                  f"smallest p-value {study['min_p_value']:.3g}")
    console.print(f"at alpha {study['check_alpha']:g}: {study['accused_at_check_alpha']}/{size} accused — "
                  + ("consistent with the stated rate" if study["consistent"] else
                     f"[bold red]MORE than the stated rate allows (p = {study['check_p_value']:.3g}): the null is not "
                     "valid for this key[/]"))
    for advice in report.advice:
        console.print(f"[bold yellow]{advice}[/]")
    if study["conservative"]:
        console.print(f"the controls confirm a false-positive rate at most {alpha:g}")
    else:
        console.print(f"[yellow]{size} controls bound the false-positive rate only below {high:.3g}; confirming "
                      f"{alpha:g} empirically would take {study['controls_needed_to_confirm_alpha']:,} controls with "
                      "none accused[/]")
    if report.path is not None:
        console.print(f"wrote {report.path} (use it with verify --null {report.path})")
