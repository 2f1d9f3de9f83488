"""``nnmark verify`` and ``nnmark check-disclosure``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from nnmark.cli.common import command, console, print_guarantee, verdict_rows


@command()
def verify(
    key: Path = typer.Option(..., "--key", help="Key directory."),
    model: Optional[str] = typer.Option(None, "--model",
                                        help="Suspect: an nnmark model directory, an .onnx file, a PyTorch/TorchScript "
                                             "file, or hf:DIR (a saved Hugging Face model)."),
    endpoint: Optional[str] = typer.Option(None, "--endpoint", help="Suspect behind an Open Inference Protocol URL."),
    model_name: Optional[str] = typer.Option(None, "--model-name", help="The model's name at --endpoint."),
    architecture: str = typer.Option("small-cnn", "--architecture", help="Architecture of a PyTorch checkpoint."),
    normalize_like: Optional[str] = typer.Option(None, "--normalize-like",
                                                 help="Dataset whose mean/std a bare checkpoint expects."),
    alpha: float = typer.Option(1e-6, "--alpha", help="Significance level: the false-positive bound."),
    null_file: Optional[Path] = typer.Option(None, "--null", help="Null measured on control models (nnmark calibrate --out)."),
    calibrate_with: Optional[list[Path]] = typer.Option(
        None, "--calibrate-with", help="Model directory made without the key, to measure the null on (repeatable; at least 10)."),
    tests: int = typer.Option(1, "--tests", help="Tests in the family this one belongs to (keys x suspects x sizes tried): "
                                                 "each is held to alpha/tests (Bonferroni)."),
    subset: Optional[int] = typer.Option(None, "--subset", help="Reveal and test only this many key items, chosen "
                                                                "from the commitment and the suspect's identity."),
    batch_size: int = typer.Option(64, "--batch-size", help="Queries per request to an endpoint."),
    model_version: Optional[str] = typer.Option(None, "--model-version", help="The model's version at --endpoint "
                                                                              "(default: the server's default)."),
    timeout: float = typer.Option(10.0, "--timeout", help="Seconds each endpoint answer may take, whole."),
    deadline: float = typer.Option(300.0, "--deadline", help="Seconds all endpoint requests together may take, "
                                                             "retries and waits included."),
    retries: int = typer.Option(3, "--retries", help="Retries of a failed request, with exponential backoff."),
    query_budget: Optional[int] = typer.Option(None, "--query-budget", help="Most queries to spend on an endpoint; "
                                                                            "checked against the scheme's need before any query."),
    device: str = typer.Option("auto", "--device"),
    layer: Optional[str] = typer.Option(None, "--layer", help="White-box schemes: the suspect's layer holding the "
                                                              "mark, where it is not under the key's layer name."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write an evidence report (JSON + HTML) here."),
    force: bool = typer.Option(False, "--force", help="Replace REPORT if it exists."),
    as_json: bool = typer.Option(False, "--json", help="Print the evidence record as JSON."),
) -> None:
    """Decide whether a suspect model carries the watermark of KEY."""
    from nnmark.workflows.verify import verify_key_file

    result = verify_key_file(
        key, report=report, force=force, null_file=null_file, calibrate_with=calibrate_with,
        normalize_like=normalize_like, model=model, endpoint=endpoint, model_name=model_name,
        architecture=architecture, alpha=alpha, tests=tests, subset=subset, device=device, layer=layer,
        http_options={"batch_size": batch_size, "timeout": timeout, "retries": retries, "query_budget": query_budget,
                      "deadline": deadline, "model_version": model_version})
    verdict, record = result.verdict.to_dict(), result.record
    if as_json:
        print(json.dumps(record, indent=2))
        return
    described = record["suspect"]
    console.print(verdict_rows(None, [(described.get("path") or described.get("endpoint"), None, verdict)]))
    console.print(f"statistic: {verdict['statistic']}, {verdict['matches']}/{verdict['total']}; "
                  f"null: {verdict['null_source']}")
    console.print(f"p-value {verdict['p_value_text']}")
    print_guarantee(verdict)
    for warning in record["warnings"]:
        console.print(f"[bold yellow]warning:[/] {warning}")
    if result.suspect.queries:
        console.print(f"queries spent: {result.suspect.queries}")
    if report is not None:
        console.print(f"evidence report: {report}/report.html")


@command(name="check-disclosure")
def check_disclosure_command(
    report: Path = typer.Argument(..., help="An evidence report directory written by verify --subset --report."),
    commitment: str = typer.Option(..., "--commitment", help="The commitment the owner published for the whole key."),
) -> None:
    """Check that the key items revealed in a report belong to the key with COMMITMENT."""
    from nnmark.workflows.verify import check_disclosure

    count = check_disclosure(report, commitment)
    console.print(f"all {count} revealed items are proven to belong to the key with commitment {commitment[:16]}…")
