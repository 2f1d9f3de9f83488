"""The ``nnmark`` command: a thin typer layer over :mod:`nnmark.api`."""
from __future__ import annotations

import functools
import inspect
import json
from pathlib import Path
from typing import Optional

import click
import typer
from typer.core import TyperGroup

from nnmark.version import __version__
from nnmark.cli.common import (
    console,
    err_console,
    fail,
    option_fields,
    parse_assignments,
    parse_shape,
    progress_bars,
)
from nnmark.errors import NNMarkError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Watermark neural networks and prove ownership of suspect models.")


class _SchemeCommands(TyperGroup):
    """`nnmark keygen SCHEME`: one command per registered scheme, built when keygen is used, so
    that `nnmark --help` and the other commands start without importing every scheme (and torch)."""

    _built: click.Group | None = None

    def _schemes(self) -> click.Group:
        if _SchemeCommands._built is None:
            from nnmark.schemes.base import SCHEMES

            schemes = typer.Typer()
            for name in SCHEMES.names():
                command(schemes, name)(_keygen_command(name, SCHEMES.get(name)))
            _SchemeCommands._built = typer.main.get_group(schemes)
        return _SchemeCommands._built

    def list_commands(self, ctx: click.Context) -> list[str]:
        return self._schemes().list_commands(ctx)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return self._schemes().get_command(ctx, name)


keygen_app = typer.Typer(cls=_SchemeCommands, no_args_is_help=True, help="Create a secret watermark key for a scheme.")
app.add_typer(keygen_app, name="keygen")

def command(target: typer.Typer = app, name: str | None = None):
    """Register a command whose NNMarkErrors become one clear line and exit status 2."""

    def register(func):
        @functools.wraps(func)
        def run(*args, **kwargs):
            try:
                return func(*args, **kwargs)
            except NNMarkError as error:
                fail(error)

        return target.command(name)(run)

    return register


DataDirOption = typer.Option(None, "--data-dir", envvar="NNMARK_DATA",
                             help="Directory holding dataset files (or set NNMARK_DATA).")


def _version(value: bool) -> None:
    if value:
        console.print(f"nnmark {__version__}")
        raise typer.Exit()


@app.callback()
def root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    pass


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
    from nnmark.reporting.tables import format_p_value
    from rich.table import Table

    from nnmark.io import ensure_can_write

    ensure_can_write(out, force)
    with progress_bars() as progress:
        summary = run_demo(out, scheme=scheme, dataset=data, data_dir=data_dir, epochs=epochs,
                           seed=seed, alpha=alpha, force=force, progress=progress)
    table = Table(title=f"nnmark demo · scheme {scheme} · {data} · alpha {alpha:g}")
    for column, justify in (("model", "left"), ("test acc", "right"), ("evidence k/n", "right"),
                            ("p-value", "right"), ("verdict", "left")):
        table.add_column(column, justify=justify)
    for name in summary.get("rows", ("watermarked", "clean")):
        entry = summary[name]
        verify = entry["verify"]
        table.add_row(name, f"{100 * entry['test_accuracy']:.1f}%", f"{verify['matches']}/{verify['total']}",
                      format_p_value(verify["p_value"]),
                      "[bold green]OWNED[/]" if verify["owned"] else "[yellow]not owned[/]")
    console.print(table)
    verify = summary[summary.get("rows", ("watermarked",))[0]]["verify"]
    console.print(f"statistic: {verify['statistic']}; null: {verify['null_source']}")
    console.print(f"decision rule: {verify['decision_rule']}")
    style = "" if verify["null_kind"] == "exact" else "[bold yellow]"
    console.print(f"{style}error rate: {verify['guarantee']}{'[/]' if style else ''}")
    if "thief" in summary:
        thief = summary["thief"]
        console.print(f"owner model {100 * summary['owner']['test_accuracy']:.1f}%, through its API "
                      f"{100 * summary['owner']['api_test_accuracy']:.1f}%; the thief sent {thief['queries']} queries"
                      + (f", {thief['marked_queries']} of them marked" if "marked_queries" in thief else "")
                      + f" ({thief['attack']}, {thief['strength']} epochs)")
        console.print(f"[bold yellow]{summary['warning']}[/]")
    console.print(f"key commitment (SHA-256): {summary['key_commitment']}")
    console.print(f"wrote {out}/summary.json, the key and the models in {summary['seconds']:.0f} s")


def _keygen_command(scheme_name: str, scheme_cls):
    extra = option_fields(scheme_cls.KeygenOptions)

    def command(**kwargs) -> None:
        from nnmark.data.base import load_dataset
        from nnmark.io import ensure_can_write
        from nnmark.models.store import load_model
        from nnmark.schemes.key import save_key
        from nnmark.workflows.keygen import make_key

        out, force, screen_models = kwargs.pop("out"), kwargs.pop("force"), kwargs.pop("screen_models")
        ensure_can_write(out, force)
        num_classes, shape = kwargs.pop("num_classes"), kwargs.pop("input_shape")
        data_name, data_dir, model_dir = kwargs.pop("data"), kwargs.pop("data_dir"), kwargs.pop("model")
        architecture, seed = kwargs.pop("architecture"), kwargs.pop("seed")
        options = {name: value for name, value in kwargs.items() if value is not None}
        with progress_bars() as progress:
            key = make_key(scheme_name, dataset=load_dataset(data_name, data_dir) if data_name else None,
                           model=load_model(Path(model_dir)) if model_dir else None, num_classes=num_classes,
                           input_shape=parse_shape(shape) if shape else None, architecture=architecture, seed=seed,
                           options=options, screen_models=screen_models, progress=progress)
        screening = key.params.get("target_screening")
        if screening:
            most = screening["most_and_total_per_target"][key.params["target"]][0]
            console.print(f"target {key.params['target']}: each of the {screen_models} screening models sent at most "
                          f"{most} of its triggers there")
        save_key(key, out, force=force)
        console.print(f"wrote {scheme_name} key to {out}")
        warning = scheme_cls().key_summary(key).get("warning")
        if warning:
            err_console.print(f"[bold yellow]warning:[/] {warning}")
        console.print(f"commitment (SHA-256): [bold]{key.commitment}[/]")
        console.print("Publish or timestamp the commitment now; keep the key directory secret.")
        if seed is not None:
            from nnmark.api import SEED_WARNING

            err_console.print(f"[bold yellow]warning:[/] {SEED_WARNING}")
        if scheme_cls.null_kind == "estimated":
            console.print(f"Scheme '{scheme_name}' has no exact null: measure it on models made without the key "
                          f"with `nnmark calibrate --key {out} --out null.json` and verify with --null null.json.")

    kw = inspect.Parameter.KEYWORD_ONLY
    params = [
        inspect.Parameter("num_classes", kw, annotation=Optional[int],
                          default=typer.Option(None, "--num-classes", help="Classes of the model to mark.")),
        inspect.Parameter("input_shape", kw, annotation=Optional[str],
                          default=typer.Option(None, "--input-shape", help="Model input as C,H,W.")),
        inspect.Parameter("seed", kw, annotation=Optional[int],
                          default=typer.Option(None, "--seed", help="Seed for a reproducible key, which is then only as secret as the seed "
                                                                       "(default: 63 random secret bits).")),
        inspect.Parameter("data", kw, annotation=Optional[str],
                          default=typer.Option(None, "--data", help="Dataset the model is trained on.")),
        inspect.Parameter("data_dir", kw, annotation=Optional[Path], default=DataDirOption),
        inspect.Parameter("model", kw, annotation=Optional[Path],
                          default=typer.Option(None, "--model", help="A model directory to take sizes (and layers) from; "
                                                                        "the model to mark, for schemes keyed off a trained classifier.")),
        inspect.Parameter("architecture", kw, annotation=str,
                          default=typer.Option("small-cnn", "--architecture",
                                               help="Architecture to be trained, for schemes that key a layer.")),
        inspect.Parameter("out", kw, annotation=Path,
                          default=typer.Option(..., "--out", help="Key directory to write.")),
        inspect.Parameter("force", kw, annotation=bool,
                          default=typer.Option(False, "--force", help="Replace OUT if it exists.")),
        inspect.Parameter("screen_models", kw, annotation=int,
                          default=typer.Option(0, "--screen-models", help="One-target schemes: train this many keyless "
                                                                          "models on --data and take the target they send "
                                                                          "the fewest triggers to (without --target).")),
    ]
    for name, kind, default, help_text in extra:
        flag = "--" + name.replace("_", "-")
        params.append(inspect.Parameter(name, kw, annotation=Optional[kind],
                                        default=typer.Option(None, flag, help=f"{help_text} (default {default})".strip())))
    command.__signature__ = inspect.Signature(params)
    command.__doc__ = f"Key for the '{scheme_name}' scheme: {scheme_cls.summary}."
    return command


@command()
def train(
    data: str = typer.Option("digits", "--data", help="Dataset name, or folder:PATH."),
    data_dir: Optional[Path] = DataDirOption,
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
    from nnmark.api import train_model
    from nnmark.data.base import load_dataset
    from nnmark.io import ensure_can_write
    from nnmark.models.store import load_model, save_model
    from nnmark.schemes.base import SCHEMES
    from nnmark.schemes.key import load_key
    from nnmark.training.distributed import join_from_environment, leave, split_batch
    from nnmark.training.presets import preset, preset_for_mode

    group = join_from_environment(device)
    main_rank = group is None or group.is_main

    def prepare():
        ensure_can_write(out, force)
        key = load_key(watermark) if watermark else None
        embed_options = parse_assignments(embed, SCHEMES.get(key.scheme).EmbedOptions, "--embed") if key else None
        if embed and not key:
            raise NNMarkError("--embed only applies with --watermark", field="--embed")
        train_mode = "pretrained" if (base is not None and mode == "scratch") else mode
        loaded = load_model(base) if base else None
        changes = {"lr": lr, "schedule": schedule, "mixed_precision": mixed_precision}
        config = preset(preset_for_mode(train_mode), epochs=epochs, batch_size=batch_size,
                        label_smoothing=label_smoothing, seed=seed, compile=compile_steps,
                        device=str(group.device) if group else device,
                        **{name: value for name, value in changes.items() if value is not None})
        if group is not None:
            split_batch(batch_size, group.world_size, field="--batch-size")
        return key, embed_options, train_mode, loaded, config, load_dataset(data, data_dir)

    try:
        key, embed_options, train_mode, loaded, config, dataset = on_every_rank(group, prepare)
        with progress_bars(not quiet and main_rank) as progress:
            trained = train_model(dataset, config, architecture=model, key=key, mode=train_mode, base=loaded,
                                  embed_options=embed_options, temperature=temperature, progress=progress,
                                  distributed=group)
        if main_rank:
            save_model(trained.model, trained.spec, out, force=force, metadata=trained.metadata())
            ranks = f" on {group.world_size} processes" if group else ""
            console.print(f"test accuracy {100 * trained.test_accuracy:.2f}% after {epochs} epochs "
                          f"({trained.result.seconds:.1f} s{ranks}); wrote {out}")
            if key is not None:
                _watermark_check(trained.model, key)
    finally:
        leave(group)


def on_every_rank(group, prepare):
    """Run ``prepare`` on every rank and stop all ranks together if it fails on any, so that no
    rank waits forever for the others in the first collective. A failing rank reports why; when
    every rank failed (the same bad input), rank 0 alone does."""
    try:
        result, error = prepare(), None
    except NNMarkError as why:
        result, error = None, why
    if group is not None:
        failures = group.count_failures(error is None)
        if failures and (error is None or (failures == group.world_size and not group.is_main)):
            raise typer.Exit(2)
    if error is not None:
        raise error
    return result


def _watermark_check(model, key) -> None:
    from nnmark.api import verify_model

    from nnmark.schemes.base import get_scheme

    if get_scheme(key.scheme).null_kind == "estimated":
        console.print("watermark check: this scheme's null is measured on control models "
                      "(nnmark calibrate, then nnmark verify --null)")
        return
    verdict = verify_model(model, key)
    console.print(f"watermark check: {verdict.statistic} {verdict.matches}/{verdict.total}, "
                  f"p = {verdict.p_value:.3g}")


@command()
def verify(
    key: Path = typer.Option(..., "--key", help="Key directory."),
    model: Optional[Path] = typer.Option(None, "--model",
                                         help="Suspect: an nnmark model directory, an .onnx file, or a PyTorch/TorchScript file."),
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
    from nnmark.io import ensure_can_write
    from nnmark.reporting.evidence import write_report
    from nnmark.reporting.tables import format_p_value, verdict_table
    from nnmark.schemes.key import load_key
    from nnmark.workflows.verify import resolve_null, verify_suspect

    if report is not None:
        ensure_can_write(report, force)
    if not 0 < alpha < 1:
        raise NNMarkError("must be between 0 and 1", field="--alpha", got=alpha)
    if tests < 1:
        raise NNMarkError("must be at least 1", field="--tests", got=tests)
    secret = load_key(key)
    null = resolve_null(secret, null_file=null_file, calibrate_with=calibrate_with, key_path=key)
    mean = std = None
    if normalize_like:
        from nnmark.data.base import load_dataset

        dataset = load_dataset(normalize_like)
        mean, std = dataset.mean, dataset.std
    result = verify_suspect(
        secret, model=model, endpoint=endpoint, model_name=model_name, architecture=architecture, mean=mean,
        std=std, null=null, alpha=alpha, tests=tests, subset=subset, device=device, layer=layer,
        http_options={"batch_size": batch_size, "timeout": timeout, "retries": retries, "query_budget": query_budget,
                      "deadline": deadline, "model_version": model_version})
    verdict, record, suspect = result.verdict, result.record, result.suspect
    described = record["suspect"]
    if report is not None:
        write_report(report, record, result.tested_key, verdict, force=force)
    if as_json:
        print(json.dumps(record, indent=2))
        return
    console.print(verdict_table([(described.get("path") or described.get("endpoint"), None, verdict)]))
    console.print(f"statistic: {verdict.statistic}, {verdict.matches}/{verdict.total}; null: {verdict.null_source}")
    console.print(f"p-value {format_p_value(verdict.p_value)}; decision rule: {verdict.decision_rule}")
    if verdict.null_kind == "exact":
        console.print(f"error rate: {verdict.guarantee}")
    else:
        console.print(f"[bold yellow]error rate: {verdict.guarantee}[/]")
    for warning in record["warnings"]:
        console.print(f"[bold yellow]warning:[/] {warning}")
    if suspect.queries:
        console.print(f"queries spent: {suspect.queries}")
    if report is not None:
        console.print(f"evidence report: {report}/report.html")


@command(name="check-disclosure")
def check_disclosure_command(
    report: Path = typer.Argument(..., help="An evidence report directory written by verify --subset --report."),
    commitment: str = typer.Option(..., "--commitment", help="The commitment the owner published for the whole key."),
) -> None:
    """Check that the key items revealed in a report belong to the key with COMMITMENT."""
    from nnmark.reporting.evidence import check_report_disclosure

    count = check_report_disclosure(report, commitment.strip().lower())
    console.print(f"all {count} revealed items are proven to belong to the key with commitment {commitment[:16]}…")


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
    from nnmark.api import calibration_study
    from nnmark.data.base import load_dataset
    from nnmark.io import ensure_can_write_file, write_json
    from nnmark.models.store import load_model
    from nnmark.schemes.key import load_key
    from nnmark.verification.nulls import ControlModel
    from nnmark.workflows.controls import train_controls

    if out is not None:
        ensure_can_write_file(out, force)
    if models < 0:
        raise NNMarkError("must be 0 or more", field="--models", got=models)
    if not 0 < alpha < 1:
        raise NNMarkError("must be between 0 and 1", field="--alpha", got=alpha)
    secret = load_key(key)
    controls = []
    for path in control or []:
        loaded = load_model(path)
        accuracy = loaded.metadata.get("test_accuracy")
        controls.append(ControlModel(str(path), loaded.spec.architecture, loaded.model,
                                     float(accuracy) if isinstance(accuracy, (int, float)) else float("nan")))
    if models:
        dataset = load_dataset(data, data_dir)
        with progress_bars() as progress:
            controls += train_controls(dataset, models, epochs=epochs, seed=seed, progress=progress)
    if not controls:
        raise NNMarkError("no control models: give --models N or --control DIR", field="--models")
    study = calibration_study(secret, controls, alpha=alpha)
    if out is not None:
        write_json(out, {**study["null"], "study": {k: v for k, v in study.items() if k != "null"}})
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
                     f"[bold red]MORE than the stated rate allows (p = {study['check_p_value']:.3g}): the null is not valid for this key[/]"))
    screening = study.get("target_screening")
    if screening and screening["suggested_target"] != screening["target"] \
            and screening["target_most"] > 2 * screening["suggested_target_most"] + 2:
        console.print(f"[bold yellow]target {screening['target']} already attracts this key's triggers in independent "
                      f"models (up to {screening['target_most']}/{study['controls'][0]['total']}); a new key made with "
                      "`nnmark keygen ... --screen-models 6` (other models than these controls) would be far easier "
                      "to prove[/]")
    if study["conservative"]:
        console.print(f"the controls confirm a false-positive rate at most {alpha:g}")
    else:
        console.print(f"[yellow]{size} controls bound the false-positive rate only below {high:.3g}; confirming "
                      f"{alpha:g} empirically would take {study['controls_needed_to_confirm_alpha']:,} controls with none accused[/]")
    if out is not None:
        console.print(f"wrote {out} (use it with verify --null {out})")


@command()
def export(
    fmt: str = typer.Argument(..., metavar="FORMAT", help="onnx"),
    model: Path = typer.Argument(..., help="Model directory."),
    out: Path = typer.Option(..., "--out", help="File to write."),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
) -> None:
    """Export one of our models (only ONNX for now)."""
    from nnmark.models.export import export_onnx
    from nnmark.models.store import load_model

    if fmt != "onnx":
        raise NNMarkError(f"unknown export format '{fmt}'", expected="onnx")
    loaded = load_model(model)
    export_onnx(loaded.model, loaded.spec, out, force=force)
    console.print(f"wrote {out}")


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
    import asyncio
    import socket

    from nnmark.serving.runtime import load_served, run_server, server_settings

    api_mark = list(api_mark or [])
    if len(models) > 1 and (model_name is not None or api_mark):
        raise NNMarkError("--model-name and --api-mark apply to a single model; several are served under their own "
                          "names", field="--model-name/--api-mark")
    for model in models:
        load_served(model, api_mark)  # every problem with a model or the key is reported here, before a server starts
    if api_mark and query_log is None:
        from nnmark.schemes.base import get_scheme
        from nnmark.schemes.key import load_key

        if any(get_scheme(load_key(path).scheme).needs_query_log for path in api_mark):
            raise NNMarkError("a DAWN API needs --query-log: its marks can only ever be verified from the log of the "
                              "queries it answered", field="--query-log")
    if query_log is not None:
        from nnmark.serving.query_log import QueryLog

        QueryLog(query_log)
    if body_timeout <= 0:
        raise NNMarkError("must be positive", field="--body-timeout", got=body_timeout)
    names = [model_name] if model_name else [
        model.stem if model.suffix.lower() == ".onnx" else model.resolve().name for model in models]
    for name in names:
        if not name or any(c in name for c in " /?#%"):
            raise NNMarkError("model name must be non-empty and hold no spaces, '/', '?', '#' or '%'",
                              field="--model-name", got=name)
    if len(set(names)) != len(names):
        raise NNMarkError("two models would be served under the same name", field="MODELS", got=names)
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise NNMarkError(f"cannot listen on {host}:{port} ({exc.strerror})", field="--port") from None
    settings, model_settings = server_settings(list(zip(models, names)), host=host, port=port, api_key=api_mark or None,
                                               query_log=query_log, verbose=verbose)
    urls = ", ".join(f"http://{host}:{port}/v2/models/{name}/infer" for name in names)
    asyncio.run(run_server(settings, model_settings, body_timeout=body_timeout,
                           on_ready=lambda: console.print(f"serving at {urls} (Ctrl-C to stop)")))


def get_scheme_fits(key, loaded, key_path: Path) -> None:
    from nnmark.schemes.base import get_scheme

    get_scheme(key.scheme).check_fits(key, loaded.spec.num_classes, tuple(loaded.spec.input_shape),
                                      f"the model (key {key_path})")


dawn_app = typer.Typer(no_args_is_help=True, help="DAWN: marks carried by the serving API's answers.")
app.add_typer(dawn_app, name="dawn")


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
    from nnmark.io import ensure_can_write
    from nnmark.models.store import load_model
    from nnmark.schemes.dawn import derive_key
    from nnmark.schemes.key import load_key, save_key
    from nnmark.serving.query_log import read_query_log

    ensure_can_write(out, force)
    secret = load_key(key)
    loaded = load_model(model)
    get_scheme_fits(secret, loaded, key)
    derived = derive_key(secret, loaded.model, read_query_log(log, client))
    save_key(derived, out, force=force)
    params = derived.params
    console.print(f"{params['marked_queries']} marked of {params['distinct_queries']} distinct queries "
                  f"({params['log_queries']} logged); wrote {out}")
    console.print("[bold yellow]The verdict is valid only if this log holds every query the client sent, recorded "
                  "before the suspect was queried: a log trimmed after seeing a suspect's answers can frame anyone.[/]")


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
    from nnmark.attacks import AttackContext, parse_chain
    from nnmark.data.base import load_dataset
    from nnmark.io import ensure_can_write
    from nnmark.models.store import load_model, save_model
    from nnmark.schemes.base import get_scheme
    from nnmark.schemes.key import load_key
    from nnmark.workflows.attack import attack_and_judge
    from nnmark.workflows.verify import resolve_null

    if out is not None:
        ensure_can_write(out, force)
    if not 0 < fraction <= 1:
        raise NNMarkError("must be in (0, 1]", field="--fraction", got=fraction)
    steps = parse_chain(attack_spec)
    if strength is not None and len(steps) > 1:
        raise NNMarkError("--strength applies to a single attack; give chain strengths as name:value",
                          field="--strength")
    secret = load_key(key)
    victim = load_model(model)
    get_scheme(secret.scheme).check_fits(secret, victim.spec.num_classes, tuple(victim.spec.input_shape),
                                         f"the model {model}")
    null = resolve_null(secret, null_file=null_file, key_path=key)
    dataset = load_dataset(data, data_dir)
    transfer = None
    if transfer_data is not None:
        if transfer_data == data:
            raise NNMarkError("is the victim's own dataset; extraction with it is what distill measures",
                              field="--transfer-data", expected="a dataset of another domain", got=transfer_data)
        from nnmark.data.transfer import transfer_images

        transfer = transfer_images(load_dataset(transfer_data, data_dir), dataset.input_shape)
    with progress_bars() as progress:
        context = AttackContext(dataset.subset(fraction, seed), victim.spec, seed=seed, victim_key=secret,
                                progress=progress, transfer=transfer)
        outcome = attack_and_judge(victim.model, secret, attack_spec, context, strength=strength, null=null,
                                   alpha=alpha, test_data=dataset)
    attacked = outcome.attacked
    keep = ("test_accuracy", "owned", "p_value", "matches", "total")
    rows = {name: {k: v for k, v in judged.to_dict().items() if k in keep}
            for name, judged in (("before", outcome.before), ("after", outcome.after))}
    if out is not None:
        from nnmark.models.store import Classifier

        # Only weights are stored: a query-time front end (input filters, a guard) or a student of
        # another architecture would be written as something it is not.
        shapes = {name: tuple(tensor.shape) for name, tensor in victim.model.state_dict().items()}
        if type(attacked) is not Classifier or getattr(attacked, "nnmark_new_task", None) is not None or \
                {name: tuple(tensor.shape) for name, tensor in attacked.state_dict().items()} != shapes:
            raise NNMarkError(f"the result of '{attack_spec}' is not {victim.spec.architecture} weights (a query-time "
                              "front end, another architecture or another task) and cannot be stored as a model; nothing was "
                              "written", field="--out")
        save_model(attacked, victim.spec, out, force=force,
                   metadata={"attacked_from": str(model), "attack": attack_spec, "strength": strength,
                             "test_accuracy": rows["after"]["test_accuracy"]})
    if as_json:
        print(json.dumps({"attack": attack_spec, "strength": strength, **rows}, indent=2))
        return
    from nnmark.reporting.tables import format_p_value

    for name, row in rows.items():
        console.print(f"{name:>6}: test acc {100 * row['test_accuracy']:.1f}%, evidence "
                      f"{row['matches']}/{row['total']}, p {format_p_value(row['p_value'])}, "
                      f"{'OWNED' if row['owned'] else 'not owned'}")
    if out is not None:
        console.print(f"wrote {out}")


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
    adaptive: bool = typer.Option(False, "--adaptive", help="Per cell, try every setting in each attack's search grid "
                                                            "(learning rates, ...); report the strongest."),
    out: Path = typer.Option(..., "--out", help="Bench directory (reused as a cache across runs)."),
    force: bool = typer.Option(False, "--force", help="Write into a non-empty directory that is not a bench."),
) -> None:
    """Attack a watermarked victim per scheme over strength sweeps; write results.json, results.md, plots.

    Under `torchrun --nproc-per-node N nnmark bench ...` the victims train data-parallel and the
    attack cells are shared out among the processes; rank 0 writes the results.
    """
    from nnmark.attacks.base import standard_attacks
    from nnmark.schemes.base import SCHEMES
    from nnmark.training.distributed import join_from_environment, leave
    from nnmark.training.presets import preset
    from nnmark.workflows.bench import BenchConfig, run_bench

    scheme_list = SCHEMES.names() if schemes == "all" else [s.strip() for s in schemes.split(",") if s.strip()]
    attack_list = [a.strip() for a in attacks.split(",") if a.strip()] if attacks else standard_attacks()
    config = BenchConfig(scheme_list, attack_list, dataset=data, architecture=model, attacker_fraction=fraction,
                         seeds=seeds, quick=quick, tolerance=tolerance, alpha=alpha, adaptive=adaptive,
                         victim=preset("small-data", epochs=epochs), transfer_data=transfer_data)
    group = join_from_environment()
    try:
        main_rank = group is None or group.is_main
        with progress_bars(main_rank) as progress:
            results = run_bench(config, out, data_dir=data_dir, force=force, progress=progress,
                                log=lambda message: err_console.print(f"[dim]{message}[/]"), distributed=group)
    finally:
        leave(group)
    if not main_rank:
        return
    removed = [r for r in results["summary"] if r["removed_rate"] > 0]
    console.print(f"{len(results['records'])} records ({results['cache']['computed']} computed, "
                  f"{results['cache']['reused']} reused from cache)")
    for row in removed:
        strength = "chain" if row["strength"] is None else f"{row['strength']:g}"
        console.print(f"removed: {row['scheme']} by {row['attack']} at {strength} "
                      f"(accuracy {100 * row['test_accuracy']:.1f}%)")
    if not removed:
        console.print("no attack removed any watermark within the accuracy tolerance")
    console.print(f"wrote {out}/results.json, results.md and plots/")


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
    from nnmark.data.base import load_dataset
    from nnmark.encdec.sweep import image_grid
    from nnmark.io import atomic_directory, atomic_write_text, ensure_can_write, write_json
    from nnmark.workflows.encdec_sweep import encdec_sweep

    ensure_can_write(out, force)
    try:
        sizes = [int(v) for v in decoder_sizes.split(",")]
        gamma_list = [float(v) for v in gammas.split(",")]
    except ValueError:
        raise NNMarkError("must be comma-separated numbers", field="--decoder-sizes/--gammas") from None
    if not 0 < train_fraction <= 1:
        raise NNMarkError("must be in (0, 1]", field="--train-fraction", got=train_fraction)
    dataset = load_dataset(data, data_dir)
    if train_fraction < 1:
        dataset = dataset.subset(train_fraction, seed=seed)
    log = lambda message: err_console.print(f"[dim]{message}[/]")  # noqa: E731
    with progress_bars() as progress:
        result = encdec_sweep(dataset, sizes=sizes, gammas=gamma_list, epochs=epochs, content=content,
                              content_scale=content_scale, decoder_style=decoder_style, measure_use_cases=use_cases, injection_epochs=injection_epochs, seed=seed,
                              progress=progress, log=log)
    sweep, table = result.sweep, result.table
    best = sweep["grid_setting"]
    with atomic_directory(out, force) as staging:
        write_json(staging / "sweep.json", sweep)
        atomic_write_text(staging / "table.md", table)
        image_grid(result.encoder, dataset.test_x, staging / "grid.png")
    console.print(table)
    console.print(f"image grid (decoder size {best['decoder_size']}, γ {best['gamma']:g}): {out}/grid.png")
    if use_cases:
        cases = sweep["use_cases"]
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
    from nnmark.data.base import dataset_names
    from nnmark.models.registry import MODELS
    from nnmark.schemes.base import SCHEMES

    console.print("datasets: " + ", ".join(dataset_names()))
    console.print("models:   " + ", ".join(MODELS.names()))
    from nnmark.attacks import ATTACKS

    console.print("attacks:  " + ", ".join(ATTACKS.names()))
    console.print("schemes:")
    for name in SCHEMES.names():
        cls = SCHEMES.get(name)
        console.print(f"  {name:<12} {cls.access:<10} {cls.summary}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted; nothing was written")
        raise SystemExit(130) from None
