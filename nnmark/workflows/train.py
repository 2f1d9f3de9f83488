"""``nnmark train`` as a flow: read what the user named, train (data-parallel under torchrun), write
the model on the main rank, and check that the watermark took."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nnmark.api import TrainedModel, train_model, verify_model
from nnmark.data.base import load_dataset
from nnmark.errors import NNMarkError
from nnmark.io import ensure_can_write
from nnmark.models.store import load_model, save_model
from nnmark.schemes.base import SCHEMES, get_scheme
from nnmark.schemes.key import load_key
from nnmark.training.distributed import Distributed, join_from_environment, leave, split_batch
from nnmark.training.presets import preset, preset_for_mode
from nnmark.workflows.options import parse_assignments


class OtherRankFailed(Exception):
    """This rank's inputs were fine, but another rank's were not: stop without a message of its own
    (the failing rank reports why)."""


@dataclass
class TrainReport:
    trained: TrainedModel | None  # None on ranks other than the main one
    path: Path | None
    processes: int
    watermark_check: str | None = None  # a line saying what the mark's verdict is right after training


def on_every_rank(group: Distributed | None, prepare):
    """Run ``prepare`` on every rank and stop all ranks together if it fails on any, so that no
    rank waits forever for the others in the first collective. A failing rank raises why; when
    every rank failed (the same bad input), rank 0 alone does, and the others raise
    :class:`OtherRankFailed`."""
    try:
        result, error = prepare(), None
    except NNMarkError as why:
        result, error = None, why
    if group is not None:
        failures = group.count_failures(error is None)
        if failures and (error is None or (failures == group.world_size and not group.is_main)):
            raise OtherRankFailed()
    if error is not None:
        raise error
    return result


def watermark_check(model, key) -> str:
    """What the freshly trained model's verdict is, in one line (where the null is exact)."""
    if get_scheme(key.scheme).key_null_kind(key) == "estimated":
        return ("watermark check: this scheme's null is measured on control models "
                "(nnmark calibrate, then nnmark verify --null)")
    verdict = verify_model(model, key)
    return f"watermark check: {verdict.statistic} {verdict.matches}/{verdict.total}, p = {verdict.p_value:.3g}"


def train_to_directory(out: str | Path, *, data: str = "digits", data_dir: str | Path | None = None,
                       architecture: str = "small-cnn", watermark: str | Path | None = None, mode: str = "scratch",
                       base: str | Path | None = None, temperature: float = 1.0, force: bool = False,
                       embed: list[str] | None = None, device: str = "auto", progress_for=None,
                       image_size: int | None = None, skip_bad_images: bool = False,
                       **settings: Any) -> TrainReport:
    """``nnmark train``: ``settings`` are :class:`~nnmark.training.TrainConfig` fields the user set
    (None: the preset's). Under torchrun every rank trains its share and rank 0 writes ``out``.
    ``progress_for(is_main)`` gives the progress display for this rank (a context manager).
    ``image_size`` and ``skip_bad_images``: for folder: and hf: data (streamed)."""
    group = join_from_environment(device)
    main_rank = group is None or group.is_main

    def prepare():
        ensure_can_write(out, force)
        key = load_key(watermark) if watermark else None
        if embed and not key:
            raise NNMarkError("--embed only applies with --watermark", field="--embed")
        embed_options = parse_assignments(embed, SCHEMES.get(key.scheme).EmbedOptions, "--embed") if key else None
        train_mode = "pretrained" if (base is not None and mode == "scratch") else mode
        loaded = load_model(base) if base else None
        config = preset(preset_for_mode(train_mode), device=str(group.device) if group else device,
                        **{name: value for name, value in settings.items() if value is not None})
        if group is not None:
            split_batch(config.batch_size, group.world_size, field="--batch-size")
        dataset = load_dataset(data, data_dir, image_size=image_size, skip_bad=skip_bad_images)
        return key, embed_options, train_mode, loaded, config, dataset

    try:
        key, embed_options, train_mode, loaded, config, dataset = on_every_rank(group, prepare)
        with progress_for(main_rank) as progress:
            trained = train_model(dataset, config, architecture=architecture, key=key, mode=train_mode, base=loaded,
                                  embed_options=embed_options, temperature=temperature, progress=progress,
                                  distributed=group)
        processes = group.world_size if group else 1
        if not main_rank:
            return TrainReport(None, None, processes)
        path = save_model(trained.model, trained.spec, out, force=force, metadata=trained.metadata())
        return TrainReport(trained, path, processes, watermark_check(trained.model, key) if key is not None else None)
    finally:
        leave(group)
