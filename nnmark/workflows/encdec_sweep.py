"""The encoder/decoder experiment as ``nnmark encdec sweep`` runs it: train the host whose
features are the content distance, sweep decoder size x γ beside the SWM and Trojan baselines,
pick the setting shown in the image grid, and measure the paper's use cases with it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnmark.api import train_model
from nnmark.data.base import Dataset
from nnmark.encdec.content import ClassifierContent, PixelContent, VGG19Content
from nnmark.encdec.sweep import paper_table, run_sweep, use_cases
from nnmark.errors import NNMarkError
from nnmark.models.fatty_skinny import DECODER_STYLES
from nnmark.training.presets import preset


@dataclass
class SweepResult:
    sweep: dict[str, Any]  # the JSON record: columns, grid setting, use cases
    table: str  # the paper's table layout, as markdown
    encoder: Any  # the grid setting's encoder, for the image grid


def encdec_sweep(dataset: Dataset, *, sizes: list[int], gammas: list[float], epochs: int = 20,
                 content: str = "classifier", content_scale: str = "mean", decoder_style: str = "pooled",
                 measure_use_cases: bool = True, injection_epochs: int = 30,
                 seed: int = 0, progress=None, log=None) -> SweepResult:
    """``content``: "classifier" (features of a small-cnn trained here, the "small-data" preset),
    "pixel", or the path of a VGG19 weights file; ``content_scale``: "mean" (ours) or "paper"
    (:mod:`nnmark.encdec.content`); ``decoder_style``: "pooled" (ours) or "dcgan" (the paper's,
    :class:`~nnmark.models.fatty_skinny.Decoder`). ``injection_epochs``: epochs of training w for
    each target label in the decode&inject use case."""
    if any(size not in (1, 2, 3) for size in sizes):
        raise NNMarkError("decoder sizes are 1, 2 or 3", field="--decoder-sizes", got=sizes)
    if decoder_style not in DECODER_STYLES:
        raise NNMarkError(f"unknown decoder style '{decoder_style}'", field="--decoder-style",
                          expected=", ".join(DECODER_STYLES))
    if not sizes or not gammas:
        raise NNMarkError("give at least one decoder size and one gamma", field="--decoder-sizes/--gammas")
    host = train_model(dataset, preset("small-data", seed=seed), progress=progress, description="host / content network")
    loss = (PixelContent() if content == "pixel" else
            ClassifierContent(host.model, "the host small-cnn nnmark trained on the same data")
            if content == "classifier" else VGG19Content(content)).at_scale(content_scale)
    sweep, networks = run_sweep(dataset, loss, sizes=sizes, gammas=gammas, epochs=epochs, seed=seed,
                                decoder_style=decoder_style, progress=progress, log=log)
    ours = [c for c in sweep["columns"] if c["method"] == "ours"]
    # The grid shows the least visible setting that still decodes (>= 95% both ways), else the best decoder.
    best = max(ours, key=lambda c: (c["decoding_success"] >= 0.95,
                                    c["psnr"] if c["decoding_success"] >= 0.95 else c["decoding_success"]))
    encoder, decoder = networks[(best["decoder_size"], best["gamma"])]
    sweep["grid_setting"] = {"decoder_size": best["decoder_size"], "gamma": best["gamma"]}
    if measure_use_cases:
        if log:
            log("use cases: decode&inject per target label, reject_or_bypass")
        sweep["use_cases"] = use_cases(host.model, host.spec, encoder, decoder, dataset, epochs=injection_epochs)
        sweep["use_cases"]["setting"] = sweep["grid_setting"]
    return SweepResult(sweep, paper_table(sweep), encoder)


def sweep_to_directory(out: str | Path, *, data: str = "digits", data_dir: str | Path | None = None,
                       decoder_sizes: str = "1,2,3", gammas: str = "0.01,0.05,0.1", train_fraction: float = 1.0,
                       seed: int = 0, force: bool = False, **settings: Any) -> SweepResult:
    """``nnmark encdec sweep``: the sweep on ``data`` (``train_fraction`` of its training split), with
    sweep.json, table.md and grid.png written into ``out``. ``settings``: the rest of
    :func:`encdec_sweep`'s arguments."""
    from nnmark.data.base import load_dataset
    from nnmark.encdec.sweep import image_grid
    from nnmark.io import atomic_directory, atomic_write_text, ensure_can_write, write_json

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
    result = encdec_sweep(dataset, sizes=sizes, gammas=gamma_list, seed=seed, **settings)
    with atomic_directory(out, force) as staging:
        write_json(staging / "sweep.json", result.sweep)
        atomic_write_text(staging / "table.md", result.table)
        image_grid(result.encoder, dataset.test_x, staging / "grid.png")
    return result
