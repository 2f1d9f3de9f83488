"""The encoder ("fatty") and decoder ("skinny") of "Fatty and Skinny: A Joint Training Method of
Watermark Encoder and Decoder" (ICLR 2019 submission, seed 003), Figure 1 and §4.

Encoder: an attention map A of the input (two convolutions, one swish, a softmax over positions);
a chain of residual blocks run on x ⊙ A whose additive terms f_i form the watermark signal; the
signal merged with x; a post-processing block of two convolutions. Every convolution has stride 1
and the stream keeps the input's C channels, so shapes are kept, as in the paper.
Where we differ: each residual block widens to ``width`` channels inside (C -> width -> C) — with
C = 1 for grey digits, a C-channel block would have 18 weights — and the softmax map is rescaled
by H·W so that a uniform map leaves x unchanged.

Decoder: a DCGAN discriminator shrunk to ``size`` (1–3) stride-2 4x4 convolutions with leaky
ReLU, then one logit: marked or not.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.silu(self.conv1(x)))  # f(x): the block's additive term


class Encoder(nn.Module):
    def __init__(self, channels: int, blocks: int = 4, width: int = 16) -> None:
        super().__init__()
        self.attention1 = nn.Conv2d(channels, width, 3, padding=1)
        self.attention2 = nn.Conv2d(width, 1, 3, padding=1)
        self.blocks = nn.ModuleList(ResidualBlock(channels, width) for _ in range(blocks))
        self.post1 = nn.Conv2d(channels, width, 3, padding=1)
        self.post2 = nn.Conv2d(width, channels, 3, padding=1)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        scores = self.attention2(F.silu(self.attention1(x))).view(n, -1)
        return (torch.softmax(scores, dim=1) * (h * w)).view(n, 1, h, w)

    def signal(self, x: torch.Tensor) -> torch.Tensor:
        """The watermark signal Σ f_i, generated from the attended input."""
        stream = x * self.attention(x)
        total = torch.zeros_like(x)
        for block in self.blocks:
            term = block(stream)
            stream = stream + term
            total = total + term
        return total

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        merged = x + self.signal(x)
        refined = merged + self.post2(F.silu(self.post1(merged)))
        return refined.clamp(0, 1)


class Decoder(nn.Module):
    def __init__(self, channels: int, size: int = 3, width: int = 8) -> None:
        super().__init__()
        if size not in (1, 2, 3):
            raise ValueError("decoder size must be 1, 2 or 3 convolutions")
        layers, in_channels = [], channels
        for index in range(size):
            out_channels = width * 2 ** index
            layers += [nn.Conv2d(in_channels, out_channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            in_channels = out_channels
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(in_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One logit per image: > 0 means 'marked'."""
        return self.head(self.features(x).mean(dim=(2, 3))).squeeze(1)


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
