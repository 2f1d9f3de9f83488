"""A PyTorch Lightning callback that puts a key's mark into the module it trains
(``pip install nnmark[lightning]``)::

    from nnmark.integrations.lightning import WatermarkCallback

    trainer = lightning.Trainer(callbacks=[WatermarkCallback(key, options={"per_batch": 16})])
    trainer.fit(module, loader)

Each training batch gets the mark's samples mixed in before ``training_step`` sees it, and the
loss ``training_step`` returns gets the mark's own term (a weight signature, EWE's entangling):
the callback wraps the module's ``training_step`` for the fit and unwraps it afterwards. The
mark's state is saved in Lightning's checkpoints with the callback's. Gradient accumulation and
data-parallel strategies keep the mark's share of each optimiser step, as the Watermarker does.

``network``: the attribute of the LightningModule holding the network the key was made for
(``"model"`` for ``self.model``); by default the module itself. ``training_step`` must run that
network on the batch it is given.
"""
from __future__ import annotations

import functools
from typing import Any

from nnmark.extras import require
from nnmark.integrations.batches import mix_batch
from nnmark.schemes.key import WatermarkKey
from nnmark.schemes.watermarker import Watermarker

L = require("lightning", "lightning", "the Lightning callback")


class WatermarkCallback(L.Callback):
    def __init__(self, key: WatermarkKey, *, options: Any = None, normalization: Any = None, seed: int = 0,
                 network: str | None = None, images: str | None = None, labels: str | None = None) -> None:
        super().__init__()
        self.key, self.options, self.normalization, self.seed = key, options, normalization, seed
        self.network, self.images, self.labels = network, images, labels
        self.watermarker: Watermarker | None = None
        self._restored: dict[str, Any] | None = None
        self._original = None

    def _target(self, pl_module):
        return pl_module if self.network is None else getattr(pl_module, self.network)

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage != "fit":
            return
        self.watermarker = Watermarker(self.key, self._target(pl_module), options=self.options,
                                       normalization=self.normalization, seed=self.seed,
                                       accumulation=trainer.accumulate_grad_batches,
                                       distributed=(trainer.global_rank, trainer.world_size))
        if self._restored is not None:
            self.watermarker.load_state_dict(self._restored)
        original = pl_module.training_step
        watermarker, images, labels = self.watermarker, self.images, self.labels

        @functools.wraps(original)
        def training_step(batch, *args, **kwargs):
            outputs = original(mix_batch(watermarker, batch, images, labels), *args, **kwargs)
            if outputs is None:  # the step chose to skip this batch
                return outputs
            term = watermarker.loss()
            if isinstance(outputs, dict):
                return {**outputs, "loss": outputs["loss"] + term}
            return outputs + term

        self._original = original
        pl_module.training_step = training_step

    def teardown(self, trainer, pl_module, stage: str) -> None:
        if stage != "fit" or self._original is None:
            return
        del pl_module.training_step  # the instance attribute goes; the class's method is back
        self._original = None
        if self.watermarker is not None:
            self.watermarker.close()

    def state_dict(self) -> dict[str, Any]:
        return {} if self.watermarker is None else {"watermarker": self.watermarker.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = state_dict.get("watermarker")
        if self.watermarker is not None and self._restored is not None:
            self.watermarker.load_state_dict(self._restored)
