"""``nnmark train``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from nnmark.cli.common import DataDirOption, command, console, progress_bars


@command()
def train(
    data: str = typer.Option("digits", "--data", help="Dataset name, folder:PATH (images in class folders) or hf:PATH "
                                                      "(a saved Hugging Face dataset); those two stream."),
    data_dir: Optional[Path] = DataDirOption,
    image_size: Optional[int] = typer.Option(None, "--image-size", help="Side of the images folder: and hf: data "
                                                                       "are decoded at (default 32; hf: its own)."),
    skip_bad_images: bool = typer.Option(False, "--skip-bad-images", help="Count unreadable images and go on "
                                                                          "(default: stop, naming the file)."),
    model: str = typer.Option("small-cnn", "--model", help="Architecture (see `nnmark list`)."),
    watermark: Optional[Path] = typer.Option(None, "--watermark", help="Key directory to embed."),
    mode: str = typer.Option("scratch", "--mode",
                             help="scratch; pretrained (fine-tune --from); distill (a fresh --model learns --from's outputs)."),
    base: Optional[Path] = typer.Option(None, "--from", help="Model directory to fine-tune or distill."),
    temperature: float = typer.Option(1.0, "--temperature", help="Softmax temperature of the teacher (distill)."),
    epochs: int = typer.Option(20, "--epochs"),
    batch_size: int = typer.Option(100, "--batch-size"),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate (default: the preset's, 0.1; 0.01 with --from)."),
    schedule: Optional[str] = typer.Option(None, "--schedule", help="step (÷10 each third), onecycle or constant "
                                                                   "(default: the preset's, step; constant with --from)."),
    label_smoothing: float = typer.Option(0.0, "--label-smoothing"),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:1, ..."),
    compile_steps: bool = typer.Option(False, "--compile",
                                       help="torch.compile the training step (CUDA graphs on GPUs); pays off on long runs."),
    mixed_precision: Optional[bool] = typer.Option(None, "--mixed-precision/--full-precision",
                                                   help="bf16 autocast (default: on for CUDA only; on a CPU with "
                                                        "bf16 units, ResNet-18 trains about 2x faster, "
                                                        "docs/benchmarks.md)."),
    embed: Optional[list[str]] = typer.Option(None, "--embed", help="Scheme embedding option NAME=VALUE (repeatable), e.g. per_batch=2."),
    out: Path = typer.Option(..., "--out", help="Model directory to write."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Train a model, embedding a watermark when --watermark is given.

    Under `torchrun --nproc-per-node N nnmark train ...` it trains data-parallel (NCCL on GPUs,
    gloo on CPU); --batch-size is the global batch and rank 0 writes OUT.
    """
    from nnmark.workflows.train import OtherRankFailed, train_to_directory

    try:
        report = train_to_directory(
            out, data=data, data_dir=data_dir, architecture=model, watermark=watermark, mode=mode, base=base,
            temperature=temperature, force=force, embed=embed, device=device, image_size=image_size,
            skip_bad_images=skip_bad_images,
            progress_for=lambda main: progress_bars(not quiet and main),
            epochs=epochs, batch_size=batch_size, lr=lr, schedule=schedule, label_smoothing=label_smoothing,
            seed=seed, compile=compile_steps, mixed_precision=mixed_precision)
    except OtherRankFailed:
        raise typer.Exit(2) from None
    if report.trained is None:
        return
    ranks = f" on {report.processes} processes" if report.processes > 1 else ""
    console.print(f"test accuracy {100 * report.trained.test_accuracy:.2f}% after {epochs} epochs "
                  f"({report.trained.result.seconds:.1f} s{ranks}); wrote {out}")
    if report.trained.result.skipped:
        console.print(f"[bold yellow]skipped {report.trained.result.skipped} unreadable images[/]")
    if report.watermark_check:
        console.print(report.watermark_check)
