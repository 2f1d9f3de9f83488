"""Finding the images and labels in a framework's batch, and putting the mixed ones back."""
from __future__ import annotations

from typing import Any

from nnmark.errors import NNMarkError

IMAGE_KEYS = ("pixel_values", "images", "image", "inputs", "x")
LABEL_KEYS = ("labels", "label", "targets", "target", "y")


def mix_batch(watermarker, batch: Any, images: str | None = None, labels: str | None = None) -> Any:
    """``batch`` with the watermarker's samples mixed in: a tuple or list whose first two items are
    images and labels, or a mapping (the keys ``images``/``labels`` name them; by default the usual
    names, ``pixel_values``/``labels`` first). The batch's own type is kept."""
    if isinstance(batch, dict):
        image_key = images or next((k for k in IMAGE_KEYS if k in batch), None)
        label_key = labels or next((k for k in LABEL_KEYS if k in batch), None)
        if image_key not in batch or label_key not in batch:
            raise NNMarkError("cannot find the images and labels in the batch", field="batch",
                              expected=f"keys such as {IMAGE_KEYS[0]!r} and {LABEL_KEYS[0]!r} (or name them)",
                              got=sorted(batch))
        x, y = watermarker.mix(batch[image_key], batch[label_key])
        return {**batch, image_key: x, label_key: y}
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        x, y = watermarker.mix(batch[0], batch[1])
        mixed = [x, y, *batch[2:]]
        return mixed if isinstance(batch, list) else type(batch)(mixed) if not hasattr(batch, "_fields") \
            else type(batch)(*mixed)
    raise NNMarkError(f"cannot find the images and labels in a batch of type {type(batch).__name__}", field="batch",
                      expected="(images, labels, ...) or a mapping with images and labels")
