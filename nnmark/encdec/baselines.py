"""The two baselines of the encoder/decoder paper's Tables 1 and 2.

* **Trojan** (Liu et al. 2018): a visible patch of fixed random pixels in the lower-right
  corner (the same stamp as scheme ``trojan``); its decoder is a skinny decoder of the same
  size trained to tell stamped from clean images.
* **SWM** (Shehab, Bertino, Ghafoor, "Watermarking Relational Databases Using
  Optimization-Based Techniques", IEEE TKDE 2008), applied to the flattened image as the paper
  does: the pixels are split by a secret permutation into one partition per bit; a bit is hidden
  by making the fraction of the partition's values above its reference (mean + c·std) at least
  ``high`` (bit 1) or at most ``low`` (bit 0), moving the values nearest the reference as little
  as needed. Decoding recomputes each partition's statistic; an image is called marked when
  every bit decodes to the hidden pattern. (Shehab et al. search the changes with an optimiser;
  we take the smallest moves directly.)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nnmark.models.fatty_skinny import Decoder
from nnmark.training.auxiliary import fit_auxiliary
from nnmark.data.stamps import stamp_patch


def trojan_stamp(images: torch.Tensor, seed: int = 0, patch: float = 0.25) -> torch.Tensor:
    _, channels, height, width = images.shape
    side = max(2, round(patch * min(height, width)))
    pattern = (torch.rand(channels, side, side, generator=torch.Generator().manual_seed(seed)) > 0.5).float()
    return stamp_patch(images, pattern, "bottom-right")


def train_detector(decoder: Decoder, clean: torch.Tensor, marked: torch.Tensor, epochs: int = 10,
                   batch_size: int = 64, lr: float = 1e-3, seed: int = 0) -> Decoder:
    """Train a decoder alone to tell ``marked`` from ``clean`` (a baseline's fixed marks)."""
    optimizer = torch.optim.Adam(decoder.parameters(), lr=lr)
    decoder.train()

    def step(batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        unmarked, stamped = batch
        unmarked_logits, marked_logits = decoder(unmarked), decoder(stamped)
        loss = (F.binary_cross_entropy_with_logits(unmarked_logits, torch.zeros_like(unmarked_logits))
                + F.binary_cross_entropy_with_logits(marked_logits, torch.ones_like(marked_logits)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return {"loss": loss}

    fit_auxiliary([clean, marked], step, epochs=epochs, batch_size=batch_size, seed=seed, device="cpu")
    return decoder.eval()


@dataclass
class SWM:
    pattern: str = "0101010101"
    seed: int = 0
    c: float = 0.0
    high: float = 0.6
    low: float = 0.4
    step: float = 1.0 / 255  # how far past the reference a moved value lands

    def partitions(self, pixels: int) -> list[torch.Tensor]:
        order = torch.randperm(pixels, generator=torch.Generator().manual_seed(self.seed))
        return list(order.chunk(len(self.pattern)))

    def _fraction_above(self, values: torch.Tensor) -> torch.Tensor:
        reference = values.mean(dim=1, keepdim=True) + self.c * values.std(dim=1, keepdim=True)
        return (values > reference).float().mean(dim=1)

    def encode(self, images: torch.Tensor, rounds: int = 8) -> torch.Tensor:
        flat = images.flatten(1).clone()
        for part, bit in zip(self.partitions(flat.shape[1]), self.pattern):
            values = flat[:, part]
            for _ in range(rounds):  # moving values shifts the reference: repeat until it holds
                reference = values.mean(dim=1, keepdim=True) + self.c * values.std(dim=1, keepdim=True)
                above = values > reference
                need = (self.high if bit == "1" else self.low) * values.shape[1]
                count = above.sum(dim=1, keepdim=True).float()
                if bit == "1":
                    missing = (need - count).ceil().clamp_min(0)
                    # raise the values just below the reference, nearest first
                    distance = torch.where(above, torch.full_like(values, float("inf")), reference - values)
                    rank = distance.argsort(dim=1).argsort(dim=1)
                    move = (rank < missing) & ~above
                    values = torch.where(move, reference + self.step, values)
                else:
                    excess = (count - need).ceil().clamp_min(0)
                    distance = torch.where(above, values - reference, torch.full_like(values, float("inf")))
                    rank = distance.argsort(dim=1).argsort(dim=1)
                    move = (rank < excess) & above
                    values = torch.where(move, reference - self.step, values)
                values = values.clamp(0, 1)
            flat[:, part] = values
        return flat.view_as(images)

    def decode(self, images: torch.Tensor) -> torch.Tensor:
        """True where every partition decodes to the hidden bit."""
        flat = images.flatten(1)
        ok = torch.ones(len(flat), dtype=torch.bool)
        for part, bit in zip(self.partitions(flat.shape[1]), self.pattern):
            fraction = self._fraction_above(flat[:, part])
            ok &= (fraction >= self.high) if bit == "1" else (fraction <= self.low)
        return ok
