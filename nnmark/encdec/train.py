"""Joint, cooperative training of encoder and decoder (seed 003, §4.3):

    L = BCE(D(x), 0) + BCE(D(E(x)), 1)              (the decoder tells marked from unmarked)
    L_final = 1e-3 · L + max(0, L_content(x, E(x)) − γ)

trained alternately, one decoder step then one encoder step per batch, both with Adam (the paper
omits its optimiser; GAN practice). Both networks minimise the same L: they cooperate.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from nnmark.encdec.content import ContentLoss
from nnmark.models.fatty_skinny import Decoder, Encoder
from nnmark.models.inference import resolve_device
from nnmark.training.auxiliary import fit_auxiliary


@dataclass
class JointConfig:
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    gamma: float = 0.01
    main_weight: float = 1e-3  # the paper's 10^-3 on L
    seed: int = 0
    device: str = "auto"


@dataclass
class JointResult:
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def decoder_loss(decoder: Decoder, original: torch.Tensor, marked: torch.Tensor) -> torch.Tensor:
    if decoder.batch_dependent and decoder.training:
        # One batch of both kinds: batches of one kind each would let batch normalisation's
        # statistics tell them apart, which the implanted decoder (one image, running statistics)
        # could never do.
        unmarked_logits, marked_logits = decoder(torch.cat([original, marked])).chunk(2)
    else:
        unmarked_logits, marked_logits = decoder(original), decoder(marked)
    return (F.binary_cross_entropy_with_logits(unmarked_logits, torch.zeros_like(unmarked_logits))
            + F.binary_cross_entropy_with_logits(marked_logits, torch.ones_like(marked_logits)))


def train_jointly(encoder: Encoder, decoder: Decoder, images: torch.Tensor, content: ContentLoss,
                  config: JointConfig, progress=None) -> JointResult:
    device = resolve_device(config.device)
    encoder.to(device).train()
    decoder.to(device).train()
    content.to(device)
    encoder_opt = torch.optim.Adam(encoder.parameters(), lr=config.lr)
    decoder_opt = torch.optim.Adam(decoder.parameters(), lr=config.lr)

    def step(batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        x, = batch
        # One encoder pass serves both steps: the encoder's weights do not change between them.
        marked = encoder(x)
        decoder_opt.zero_grad(set_to_none=True)
        decoder_loss(decoder, x, marked.detach()).backward()
        decoder_opt.step()
        # encoder step on L_final, against the decoder just updated
        main = decoder_loss(decoder, x, marked)
        distance = content(x, marked)
        loss = config.main_weight * main + torch.clamp(distance - config.gamma, min=0)
        encoder_opt.zero_grad(set_to_none=True)
        loss.backward()
        encoder_opt.step()
        return {"main_loss": main, "content": distance}

    started = time.perf_counter()
    history = fit_auxiliary([images], step, epochs=config.epochs, batch_size=config.batch_size, seed=config.seed,
                            device=device, drop_last=True, shuffle_on_device=True, progress=progress,
                            description="encoder/decoder")
    result = JointResult([{"epoch": epoch + 1, **means} for epoch, means in enumerate(history)],
                         time.perf_counter() - started)
    encoder.eval().cpu()
    decoder.eval().cpu()
    content.cpu()
    return result
