"""Putting a key's mark into a model, the way its scheme says: trained in from scratch with the
scheme's hooks, or — for a scheme whose key is made from a trained model — into that model,
directly where the scheme has its own way (``embed_trained``: decode&inject) or by fine-tuning it
with the hooks (frontier stitching). The demo and the bench both mark their models here."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnmark.api import TrainedModel, train_model
from nnmark.data.base import Dataset
from nnmark.data.streaming import as_tensors, train_size
from nnmark.training.evaluation import accuracy_on
from nnmark.models.store import LoadedModel
from nnmark.schemes.base import get_scheme
from nnmark.schemes.key import WatermarkKey
from nnmark.training.distributed import Distributed
from nnmark.training.presets import preset

FINE_TUNE_EPOCHS = 10
DIRECT_SAMPLE = 5000  # images of streamed data a direct embedding (decode&inject) trains on


@dataclass
class Marked:
    model: Any
    spec: Any
    test_accuracy: float
    trained: TrainedModel | None  # how it was trained, where it was (None for a direct embedding)
    how: dict[str, Any] = field(default_factory=dict)


def marks_a_trained_model(scheme: str, key_options: dict[str, Any] | None = None) -> bool:
    """Whether the scheme's key is made from a trained model (which is then the one to mark)."""
    implementation = get_scheme(scheme)
    return "classifier" in implementation.requirements(implementation.make_options("keygen", key_options))


def mark_trained(key: WatermarkKey, host: TrainedModel, data: Dataset, *, seed: int = 0, batch_size: int = 64,
                 progress=None, distributed: Distributed | None = None) -> Marked:
    """Mark ``host`` (never changed: the marked model is a new one) with ``key``."""
    implementation = get_scheme(key.scheme)
    # a direct embedding reads images whole: of streamed data, a sample of them
    direct = implementation.embed_trained(host.model, host.spec, key, as_tensors(data, DIRECT_SAMPLE), seed=seed,
                                          progress=progress)
    if direct is not None:
        model, spec, info = direct
        return Marked(model, spec, accuracy_on(model, data), None, {"mode": "direct", **info})
    options = implementation.recommended_embed_options(train_size(data))
    base = LoadedModel(host.model, host.spec, {}, Path("<the trained model>"))
    tuned = train_model(data, preset("fine-tune", epochs=FINE_TUNE_EPOCHS, batch_size=batch_size, seed=seed),
                        key=key, mode="pretrained", base=base, embed_options=options, progress=progress,
                        description="watermarked", distributed=distributed)
    return Marked(tuned.model, tuned.spec, tuned.test_accuracy, tuned,
                  {"mode": "fine-tune", "epochs": FINE_TUNE_EPOCHS, "embed_options": options})
