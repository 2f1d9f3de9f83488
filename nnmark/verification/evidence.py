"""What a scheme reads from a suspect, typed: one 0/1 per key item, the facts worth recording,
and the section of the HTML report that shows it. Each scheme returns its own kind from
``extract``, so nothing outside the scheme needs to know what its key or its evidence holds."""
from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from nnmark.extras import require


class Evidence:
    """Subclasses define ``hits`` and may add facts and a report section."""

    @property
    def hits(self) -> torch.Tensor:
        """One 0/1 per key item, 1 where the suspect agrees with the key."""
        raise NotImplementedError

    @property
    def matches(self) -> int:
        return int(self.hits.sum())

    @property
    def total(self) -> int:
        return len(self.hits)

    def facts(self) -> dict[str, Any]:
        """Scalars a record keeps beside the count (a bit error rate, a probe rate, a layer)."""
        return {}

    def to_json(self) -> dict[str, Any]:
        return {"matches": self.matches, "total": self.total, "hits": self.hits.tolist(), **self.facts()}

    def render_html(self, key) -> str:
        """A section of the evidence report ('' for none); the key is the one tested."""
        return ""


@dataclass
class TriggerEvidence(Evidence):
    """A trigger set's answers: the suspect's label for each trigger and the key's, and, where the
    key holds probes (ordinary images sent among the triggers), its labels for those."""

    predictions: torch.Tensor
    labels: torch.Tensor
    probe_predictions: torch.Tensor | None = None
    target: int | None = None  # one-target keys: the class every trigger carries

    @property
    def hits(self) -> torch.Tensor:
        return (self.predictions == self.labels).int()

    @property
    def probe_target_rate(self) -> float | None:
        """The share of probes the suspect sent to the target (None without probes or target)."""
        if self.probe_predictions is None or self.target is None or not len(self.probe_predictions):
            return None
        return float((self.probe_predictions == self.target).float().mean())

    def facts(self) -> dict[str, Any]:
        rate = self.probe_target_rate
        return {} if rate is None else {"probe_target_rate": rate}

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "predictions": self.predictions.tolist()}

    def render_html(self, key, limit: int = 200) -> str:
        inputs = key.tensors.get("inputs")
        if inputs is None:
            return ""
        labels, predictions = self.labels.tolist(), self.predictions.tolist()
        cells = []
        for index in range(min(limit, len(inputs))):
            image = (inputs[index].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
            image = image[:, :, 0] if image.shape[2] == 1 else image
            scale = max(1, 64 // image.shape[0])
            image = np.kron(image, np.ones((scale, scale) + ((1,) if image.ndim == 3 else ()), dtype=np.uint8))
            agree = predictions[index] == labels[index]
            cells.append(f'<figure class="{"hit" if agree else "miss"}"><img src="data:image/png;base64,{_png(image)}">'
                         f"<figcaption>key {labels[index]} · model {predictions[index]}</figcaption></figure>")
        note = f"<p>First {limit} of {len(inputs)} shown.</p>" if len(inputs) > limit else ""
        return ("<h2>Trigger inputs and the model's answers</h2><p>Green: the model answered the secret "
                f"label; grey: it did not.</p>{note}<div class=grid>{''.join(cells)}</div>")


@dataclass
class SignatureEvidence(Evidence):
    """A weight signature read from a layer: the decoded bits against the key's."""

    decoded: torch.Tensor
    bits: torch.Tensor
    agreed: torch.Tensor
    zero_projections: int
    layer: str
    layer_matched_by: str

    @property
    def hits(self) -> torch.Tensor:
        return self.agreed

    def facts(self) -> dict[str, Any]:
        return {"bit_error_rate": 1 - self.matches / self.total, "layer": self.layer,
                "layer_matched_by": self.layer_matched_by, "zero_projections": self.zero_projections}

    def render_html(self, key) -> str:
        return (f"<h2>Signature</h2><p>Layer <code>{html.escape(self.layer)}</code> "
                f"(found by {html.escape(self.layer_matched_by)}); bit error rate "
                f"{self.facts()['bit_error_rate']:.3f}.</p>")


def _png(array: np.ndarray) -> str:
    Image = require("PIL.Image", "plots", "the evidence report's images")

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()
