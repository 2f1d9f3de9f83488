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


def train_injection(implanted: Classifier, marked: torch.Tensor, target: int, epochs: int = 30,
                    lr: float = 0.05, batch_size: int = 128, seed: int = 0) -> float:
    """Train only w so that marked inputs go to ``target``. Returns the final loss."""
    torch.manual_seed(seed)
    implanted.eval()  # host batch norms stay as they are: nothing of the host changes
    w = implanted.net.w
    optimizer = torch.optim.Adam([w], lr=lr)
    labels = torch.full((len(marked),), target, dtype=torch.long)
    loss = torch.zeros(())
    for _ in range(epochs):
        for start in range(0, len(marked), batch_size):
            logits = implanted(marked[start:start + batch_size])
            loss = F.cross_entropy(logits, labels[start:start + batch_size])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return float(loss.detach())


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
