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
ReLU, then one logit: marked or not. Two styles:

* ``"dcgan"``, the paper's: DCGAN's discriminator as Radford et al. (2016) give it — 64, 128, 256
  channels, batch normalisation after every convolution but the first, and a final convolution
  over the whole remaining map (DCGAN's 4x4 one on 32x32 images with three strides) as the head.
  It is built for one image size.
* ``"pooled"``, nnmark's default: 8, 16, 32 channels, no batch normalisation (so it reads each
  image alone, the same in training as once implanted), and a global mean with one linear unit
  as the head (so one decoder reads any image size).
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


DECODER_STYLES = ("pooled", "dcgan")


class Decoder(nn.Module):
    def __init__(self, channels: int, size: int = 3, width: int | None = None, style: str = "pooled",
                 image_size: tuple[int, int] | None = None) -> None:
        super().__init__()
        if size not in (1, 2, 3):
            raise ValueError("decoder size must be 1, 2 or 3 convolutions")
        if style not in DECODER_STYLES:
            raise ValueError(f"decoder style must be one of {', '.join(DECODER_STYLES)}")
        self.style = style
        width = width or (64 if style == "dcgan" else 8)
        layers, in_channels = [], channels
        for index in range(size):
            out_channels = width * 2 ** index
            layers.append(nn.Conv2d(in_channels, out_channels, 4, stride=2, padding=1, bias=style != "dcgan" or index == 0))
            if style == "dcgan" and index > 0:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.LeakyReLU(0.2))
            in_channels = out_channels
        self.features = nn.Sequential(*layers)
        if style == "dcgan":
            if image_size is None:
                raise ValueError("a DCGAN decoder is built for one image size: give image_size")
            remaining = tuple(side // 2 ** size for side in image_size)
            if min(remaining) < 1:
                raise ValueError(f"images of {image_size} are too small for {size} stride-2 convolutions")
            self.image_size = tuple(image_size)
            self.head: nn.Module = nn.Conv2d(in_channels, 1, remaining, bias=False)
        else:
            self.image_size = None
            self.head = nn.Linear(in_channels, 1)

    @property
    def batch_dependent(self) -> bool:
        """True when training mode normalises over the batch (what the decoder sees together matters)."""
        return any(isinstance(m, nn.BatchNorm2d) for m in self.features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One logit per image: > 0 means 'marked'."""
        features = self.features(x)
        if self.style == "dcgan":
            return self.head(features).flatten(1).mean(1)
        return self.head(features.mean(dim=(2, 3))).squeeze(1)


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
