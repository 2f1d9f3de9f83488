"""Hugging Face ``transformers``: a Trainer that puts a key's mark into the model it trains
(``pip install nnmark[transformers]``)::

    from nnmark.integrations.transformers import WatermarkTrainer

    trainer = WatermarkTrainer(model=model, args=args, train_dataset=dataset, data_collator=collate,
                               watermark_key=key, watermark_options={"per_batch": 8},
                               watermark_normalization=(processor.image_mean, processor.image_std))
    trainer.train()

The batches keep their usual form (``pixel_values`` and ``labels``; other names with
``watermark_inputs``): ``compute_loss`` mixes the mark's samples into them, lets the model compute
its own loss on the whole batch, and adds the mark's term. It is a subclass because the loss is
the Trainer's to compute; a callback cannot change it. Gradient accumulation and data-parallel
runs keep the mark's share of each optimiser step. The images a key holds are in [0, 1]; give the
image processor's normalisation, which the key's images then receive too.

:func:`load_image_classifier` opens a saved model directory (``config.json`` and
``model.safetensors``) without running code from it, for ``nnmark verify --model hf:DIR``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nnmark.errors import NNMarkError
from nnmark.extras import require
from nnmark.integrations.batches import mix_batch
from nnmark.schemes.key import WatermarkKey
from nnmark.schemes.watermarker import Watermarker

transformers = require("transformers", "transformers", "the Hugging Face integration")


class WatermarkTrainer(transformers.Trainer):
    def __init__(self, *args: Any, watermark_key: WatermarkKey, watermark_options: Any = None,
                 watermark_normalization: Any = None, watermark_seed: int = 0,
                 watermark_inputs: tuple[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.watermark_inputs = watermark_inputs or (None, None)
        self.watermarker = Watermarker(watermark_key, self.model, options=watermark_options,
                                       normalization=watermark_normalization, seed=watermark_seed,
                                       accumulation=self.args.gradient_accumulation_steps,
                                       distributed=(self.args.process_index, self.args.world_size))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:
            inputs = mix_batch(self.watermarker, inputs, *self.watermark_inputs)
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if model.training:
            loss = loss + self.watermarker.loss(outputs)
        return (loss, outputs) if return_outputs else loss


def load_image_classifier(directory: str | Path):
    """A saved image classifier (``config.json`` + ``model.safetensors``) and the normalisation its
    image processor applies (None where it has none), loaded without running any code the
    directory names (``auto_map``, remote code) and without pickled weights."""
    directory = Path(directory)
    config_path = directory / "config.json"
    if not directory.is_dir() or not config_path.is_file():
        raise NNMarkError("is not a saved Hugging Face model", path=directory, expected="a directory with config.json")
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError) as exc:
        raise NNMarkError(f"cannot be read as JSON ({exc})", path=config_path) from None
    if not isinstance(config, dict):
        raise NNMarkError("is not a JSON object", path=config_path)
    if "auto_map" in config or config.get("trust_remote_code"):
        raise NNMarkError("names code of its own to run (auto_map): nnmark never runs code from a model file",
                          path=config_path, field="auto_map")
    if not (directory / "model.safetensors").is_file():
        raise NNMarkError("holds no model.safetensors: only safetensors weights are read (never pickled ones)",
                          path=directory, field="model.safetensors")
    try:
        model = transformers.AutoModelForImageClassification.from_pretrained(
            str(directory), local_files_only=True, trust_remote_code=False, use_safetensors=True)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise NNMarkError(f"cannot be loaded as an image classifier ({str(exc).splitlines()[0][:200]})",
                          path=directory) from None
    normalization = None
    processor_path = directory / "preprocessor_config.json"
    if processor_path.is_file():
        try:
            processor = json.loads(processor_path.read_text())
        except (OSError, ValueError) as exc:
            raise NNMarkError(f"cannot be read as JSON ({exc})", path=processor_path) from None
        if processor.get("do_normalize", True) and "image_mean" in processor and "image_std" in processor:
            normalization = (tuple(processor["image_mean"]), tuple(processor["image_std"]))
    return model.eval(), normalization
