"""The paper's use cases (Appendix B): a trained decoder implanted in a host network.

* decode&inject (:mod:`nnmark.models.decode_inject`): only w of the implanted model is trained
  (:func:`train_injection`). Used to prove ownership (marked inputs go to a chosen label) or to
  demonstrate a backdoor.
* :class:`RejectOrBypass` — admission control: forwards only inputs the decoder calls marked.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from nnmark.models.fatty_skinny import Decoder
from nnmark.models.store import Classifier
from nnmark.training.auxiliary import fit_auxiliary


def train_injection(implanted: Classifier, marked: torch.Tensor, target: int, epochs: int = 30,
                    lr: float = 0.05, batch_size: int = 128, seed: int = 0) -> float:
    """Train only w so that marked inputs go to ``target``. Returns the final loss."""
    implanted.eval()  # host batch norms stay as they are: nothing of the host changes
    optimizer = torch.optim.Adam([implanted.net.w], lr=lr)
    labels = torch.full((len(marked),), target, dtype=torch.long)
    last = {}

    def step(batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        images, wanted = batch
        loss = F.cross_entropy(implanted(images), wanted)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        last["loss"] = loss
        return {"loss": loss}

    fit_auxiliary([marked, labels], step, epochs=epochs, batch_size=batch_size, seed=seed, device="cpu", shuffle=False)
    return float(last["loss"].detach()) if last else 0.0


class RejectOrBypass(nn.Module):
    """Admission control: ``route`` says which inputs the decoder admits (marked) and returns the
    host's logits for those only."""

    def __init__(self, host: nn.Module, decoder: Decoder) -> None:
        super().__init__()
        self.host, self.decoder = host, copy.deepcopy(decoder).eval()

    @torch.no_grad()
    def admitted(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(x) > 0

    @torch.no_grad()
    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = self.admitted(x)
        return mask, self.host(x[mask])
