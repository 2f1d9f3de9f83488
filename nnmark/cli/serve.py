"""``nnmark serve``, ``nnmark export`` and ``nnmark dawn derive``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from nnmark.cli.common import app, command, console

dawn_app = typer.Typer(no_args_is_help=True, help="DAWN: marks carried by the serving API's answers.")
app.add_typer(dawn_app, name="dawn")


@command()
def serve(
    models: list[Path] = typer.Argument(..., help="Model directories of ours, or ONNX files, to serve (each under "
                                                  "its directory or file name)."),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8080, "--port"),
    model_name: Optional[str] = typer.Option(None, "--model-name", help="Name in the URL of a single model "
                                                                        "(default: the directory or file name)."),
    api_mark: Optional[list[Path]] = typer.Option(None, "--api-mark", "--dawn",
                                                  help="A key whose mark the API carries (one model; repeat it to "
                                                       "stack a dawn and a dark-knowledge key): dawn (a keyed share "
                                                       "of answers wrong; needs --query-log) or dark-knowledge (a "
                                                       "keyed class second in every answer's probabilities)."),
    query_log: Optional[Path] = typer.Option(None, "--query-log", help="Record every request's images in this "
                                                                       "directory (what `nnmark dawn derive` reads)."),
    body_timeout: float = typer.Option(30.0, "--body-timeout", help="Seconds a request body may take to arrive."),
    verbose: bool = typer.Option(False, "--verbose", help="Log every request."),
) -> None:
    """Serve models on MLServer over the Open Inference Protocol (v2 REST) until interrupted."""
    from nnmark.workflows.serve import prepare_serving

    serving = prepare_serving(models, host=host, port=port, model_name=model_name, api_marks=api_mark,
                              query_log=query_log, body_timeout=body_timeout, verbose=verbose)
    serving.run(on_ready=lambda: console.print(f"serving at {', '.join(serving.urls)} (Ctrl-C to stop)"))


@command()
def export(
    fmt: str = typer.Argument(..., metavar="FORMAT", help="onnx"),
    model: Path = typer.Argument(..., help="Model directory."),
    out: Path = typer.Option(..., "--out", help="File to write."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
) -> None:
    """Export one of our models (only ONNX for now)."""
    from nnmark.workflows.serve import export_model_file

    console.print(f"wrote {export_model_file(fmt, model, out, force=force)}")


@command(dawn_app, "derive")
def dawn_derive(
    key: Path = typer.Option(..., "--key", help="The DAWN serving key the API answered with."),
    log: Path = typer.Option(..., "--log", help="The API's query log (nnmark serve --query-log)."),
    model: Path = typer.Option(..., "--model", help="The model the API served."),
    client: Optional[str] = typer.Option(None, "--client", help="Only this client's queries (its address in the log)."),
    out: Path = typer.Option(..., "--out", help="Write the verification key here."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
) -> None:
    """Make the verification key for a suspected client: its marked queries and the wrong answers they got."""
    from nnmark.workflows.dawn import LOG_CAVEAT, derive_to_directory

    derived = derive_to_directory(key, log, model, out, client=client, force=force)
    params = derived.key.params
    console.print(f"{params['marked_queries']} marked of {params['distinct_queries']} distinct queries "
                  f"({params['log_queries']} logged); wrote {derived.path}")
    console.print(f"[bold yellow]{LOG_CAVEAT}[/]")
