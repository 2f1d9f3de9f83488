"""``nnmark encdec sweep`` and ``nnmark list``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from nnmark.cli.common import DataDirOption, app, command, console, err_console, progress_bars

encdec_app = typer.Typer(no_args_is_help=True, help="The learned encoder/decoder watermark (Fatty and Skinny).")
app.add_typer(encdec_app, name="encdec")


@command(encdec_app, "sweep")
def encdec_sweep(
    data: str = typer.Option("digits", "--data"),
    data_dir: Optional[Path] = DataDirOption,
    decoder_sizes: str = typer.Option("1,2,3", "--decoder-sizes"),
    gammas: str = typer.Option("0.01,0.05,0.1", "--gammas"),
    epochs: int = typer.Option(20, "--epochs", help="Epochs of joint training per setting."),
    content: str = typer.Option("classifier", "--content",
                                help="classifier (features of a model nnmark trains first), pixel, or a VGG19 weights file."),
    content_scale: str = typer.Option("mean", "--content-scale",
                                      help="mean (over channels and positions, nnmark's) or paper (summed over "
                                           "channels, mean over positions: the paper's equation 4)."),
    decoder_style: str = typer.Option("pooled", "--decoder-style",
                                      help="pooled (nnmark's: no batch norm, global-mean head) or dcgan (the paper's "
                                           "DCGAN discriminator)."),
    use_cases: bool = typer.Option(True, "--use-cases/--no-use-cases", help="Also measure decode&inject and reject_or_bypass."),
    injection_epochs: int = typer.Option(30, "--injection-epochs", help="Epochs of training w per target label (decode&inject)."),
    train_fraction: float = typer.Option(1.0, "--train-fraction", help="Train on this share of the training split "
                                                                       "(the test split is kept whole)."),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(..., "--out"),
    force: bool = typer.Option(False, "--force"),
) -> None:
    """Decoder size x γ with the SWM and Trojan baselines, in the paper's table layout; image grid."""
    from nnmark.workflows.encdec_sweep import sweep_to_directory

    with progress_bars() as progress:
        result = sweep_to_directory(out, data=data, data_dir=data_dir, decoder_sizes=decoder_sizes, gammas=gammas,
                                    train_fraction=train_fraction, seed=seed, force=force, epochs=epochs,
                                    content=content, content_scale=content_scale, decoder_style=decoder_style,
                                    measure_use_cases=use_cases, injection_epochs=injection_epochs,
                                    progress=progress, log=lambda message: err_console.print(f"[dim]{message}[/]"))
    best = result.sweep["grid_setting"]
    console.print(result.table)
    console.print(f"image grid (decoder size {best['decoder_size']}, γ {best['gamma']:g}): {out}/grid.png")
    if use_cases:
        cases = result.sweep["use_cases"]
        console.print(f"decode&inject: host accuracy {100 * cases['host_accuracy']:.1f}% → with implant "
                      f"{100 * cases['implanted_accuracy_unmarked_min']:.1f}–{100 * cases['implanted_accuracy_unmarked_max']:.1f}% "
                      f"on unmarked; attack success per label "
                      + ", ".join(f"{k}: {100 * v:.0f}%" for k, v in cases["attack_success_per_label"].items()))
        gate = cases["reject_or_bypass"]
        console.print(f"reject_or_bypass: rejects {100 * gate['rejected_unmarked']:.1f}% of unmarked, "
                      f"admits {100 * gate['admitted_marked']:.1f}% of marked")


@command(name="list")
def list_components() -> None:
    """List the datasets, model architectures and watermark schemes available."""
    from nnmark.workflows.listing import components

    found = components()
    console.print("datasets: " + ", ".join(found["datasets"]))
    console.print("models:   " + ", ".join(found["models"]))
    console.print("attacks:  " + ", ".join(found["attacks"]))
    console.print("schemes:")
    for name, access, summary in found["schemes"]:
        console.print(f"  {name:<12} {access:<10} {summary}")
