"""``nnmark demo``: the whole job on the embedded data."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from nnmark.cli.common import DataDirOption, command, console, print_guarantee, progress_bars, verdict_rows


@command()
def demo(
    out: Path = typer.Option(Path("nnmark-demo"), "--out", help="Output directory."),
    scheme: str = typer.Option("adi", "--scheme", help="Watermark scheme to demonstrate."),
    data: str = typer.Option("digits", "--data", help="Dataset (default: the embedded digits)."),
    data_dir: Optional[Path] = DataDirOption,
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Training epochs (default 20)."),
    seed: int = typer.Option(0, "--seed"),
    alpha: float = typer.Option(1e-6, "--alpha", help="Significance level of the ownership test."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
) -> None:
    """Train a watermarked and a clean model on the embedded data, verify both, summarise."""
    from nnmark.workflows.demo import run_demo

    with progress_bars() as progress:
        summary = run_demo(out, scheme=scheme, dataset=data, data_dir=data_dir, epochs=epochs,
                           seed=seed, alpha=alpha, force=force, progress=progress)
    names = summary.get("rows", ("watermarked", "clean"))
    console.print(verdict_rows(f"nnmark demo · scheme {scheme} · {data} · alpha {alpha:g}",
                               [(name, summary[name]["test_accuracy"], summary[name]["verify"]) for name in names]))
    verify = summary[names[0]]["verify"]
    console.print(f"statistic: {verify['statistic']}; null: {verify['null_source']}")
    print_guarantee(verify)
    if "thief" in summary:
        thief = summary["thief"]
        console.print(f"owner model {100 * summary['owner']['test_accuracy']:.1f}%, through its API "
                      f"{100 * summary['owner']['api_test_accuracy']:.1f}%; the thief sent {thief['queries']} queries"
                      + (f", {thief['marked_queries']} of them marked" if "marked_queries" in thief else "")
                      + f" ({thief['attack']}, {thief['strength']} epochs)")
        console.print(f"[bold yellow]{summary['warning']}[/]")
    console.print(f"key commitment (SHA-256): {summary['key_commitment']}")
    console.print(f"wrote {out}/summary.json, the key and the models in {summary['seconds']:.0f} s")
