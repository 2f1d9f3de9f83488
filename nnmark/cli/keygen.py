"""``nnmark keygen SCHEME``: one command per registered scheme, its options read off the scheme's
keygen options. The commands are built when ``keygen`` is used, so ``nnmark --help`` and the other
commands start without importing every scheme (and torch)."""
from __future__ import annotations

from pathlib import Path

import click
import typer
from typer.core import TyperGroup

from nnmark.cli.common import app, console, fail, progress_bars, warn
from nnmark.errors import NNMarkError

# The options every scheme's keygen takes, beside its own.
COMMON = [
    click.Option(["--num-classes"], type=int, help="Classes of the model to mark."),
    click.Option(["--input-shape"], help="Model input as C,H,W."),
    click.Option(["--seed"], type=int, help="Seed for a reproducible key, which is then only as secret as the seed "
                                            "(default: 63 random secret bits)."),
    click.Option(["--data"], help="Dataset the model is trained on."),
    click.Option(["--data-dir"], type=click.Path(path_type=Path), envvar="NNMARK_DATA",
                 help="Directory holding dataset files (or set NNMARK_DATA)."),
    click.Option(["--image-size"], type=int, help="Side of the images folder: and hf: data are read at."),
    click.Option(["--model"], type=click.Path(path_type=Path),
                 help="A model directory to take sizes (and layers) from; the model to mark, for schemes keyed off a "
                      "trained classifier."),
    click.Option(["--architecture"], default="small-cnn", show_default=True,
                 help="Architecture to be trained, for schemes that key a layer."),
    click.Option(["--out"], type=click.Path(path_type=Path), required=True, help="Key directory to write."),
    click.Option(["--force"], is_flag=True, help="Replace OUT if it exists."),
    click.Option(["--screen-models"], type=int, default=0,
                 help="One-target schemes: train this many keyless models on --data and take the target they send the "
                      "fewest triggers to (without --target)."),
]


def scheme_command(entry) -> click.Command:
    own = [click.Option([option.flag], type=option.kind, default=None,
                        help=f"{option.help} (default {option.default})".strip()) for option in entry.keygen_options]
    names = {option.name for option in entry.keygen_options}

    def run(**values) -> None:
        from nnmark.workflows.keygen import keygen_to_directory

        options = {name: value for name, value in values.items() if name in names and value is not None}
        common = {name: value for name, value in values.items() if name not in names}
        try:
            with progress_bars() as progress:
                report = keygen_to_directory(entry.name, common.pop("out"), options=options, progress=progress,
                                             **common)
        except NNMarkError as error:
            fail(error)
        if report.screening:
            console.print(report.screening)
        console.print(f"wrote {entry.name} key to {report.path}")
        for warning in report.warnings:
            warn(warning)
        console.print(f"commitment (SHA-256): [bold]{report.key.commitment}[/]")
        console.print("Publish or timestamp the commitment now; keep the key directory secret.")
        if report.next_step:
            console.print(report.next_step)

    return click.Command(entry.name, params=COMMON + own, callback=run,
                         help=f"Key for the '{entry.name}' scheme: {entry.summary}.")


class SchemeCommands(TyperGroup):
    _built: dict[str, click.Command] | None = None

    def _commands(self) -> dict[str, click.Command]:
        if SchemeCommands._built is None:
            from nnmark.workflows.keygen import scheme_catalog

            SchemeCommands._built = {entry.name: scheme_command(entry) for entry in scheme_catalog()}
        return SchemeCommands._built

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self._commands())

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return self._commands().get(name)


keygen_app = typer.Typer(cls=SchemeCommands, no_args_is_help=True, help="Create a secret watermark key for a scheme.")
app.add_typer(keygen_app, name="keygen")
