"""Input transformations against black-box checks: the thief serves the stolen model behind a
filter that blurs, compresses or perturbs every query, hoping the trigger images stop working
while ordinary inputs survive. The attacked model is the victim with the filter in front; its
weights are unchanged (saving it saves the victim's weights).

* ``input-blur``  — Gaussian blur, strength = sigma in pixels;
* ``input-jpeg``  — JPEG-like compression: 8x8 block DCT quantised with the JPEG luminance table
  at quality ``strength`` (lower is stronger);
* ``input-noise`` — Gaussian noise, strength = std on the [0, 1] scale;
* ``input-transform`` — all three at once, strength = severity in (0, 1]: blur sigma 1.5·s,
  quality 100 − 90·s, noise 0.1·s;
* ``input-quantize`` — each pixel rounded to ``strength`` bits;
* ``input-squeeze`` — feature squeezing (Xu et al., NDSS 2018): bit-depth reduction to 5 bits,
  then a median filter of window ``strength`` pixels;
* ``input-occlude`` — a random square of each query blacked out, its side ``strength`` of the
  image's (a fresh place per query).
"""
from __future__ import annotations

from dataclasses import dataclass

import math

import torch
import torch.nn.functional as F

from nnmark.attacks.base import Attack, AttackContext, register_attack
from nnmark.models.store import Classifier

JPEG_LUMINANCE = torch.tensor([
    [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56], [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]], dtype=torch.float32)


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma <= 0:
        return images
    radius = max(1, math.ceil(2 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-offsets ** 2 / (2 * sigma ** 2))
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    padded = F.pad(images, (radius, radius, radius, radius), mode="replicate")
    horizontal = F.conv2d(padded, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(horizontal, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


def dct_matrix(size: int = 8) -> torch.Tensor:
    n = torch.arange(size, dtype=torch.float32)
    matrix = torch.cos(math.pi * (2 * n[None, :] + 1) * n[:, None] / (2 * size)) * math.sqrt(2 / size)
    matrix[0] /= math.sqrt(2)
    return matrix  # orthonormal DCT-II: coefficients = M @ block @ M.T


def jpeg_like(images: torch.Tensor, quality: float) -> torch.Tensor:
    quality = min(max(quality, 1.0), 100.0)
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    table = ((JPEG_LUMINANCE * scale + 50) / 100).floor().clamp_min(1).to(images.device)
    n, c, h, w = images.shape
    pad_h, pad_w = (-h) % 8, (-w) % 8
    padded = F.pad(images, (0, pad_w, 0, pad_h), mode="replicate") * 255 - 128
    blocks = padded.unfold(2, 8, 8).unfold(3, 8, 8)  # n, c, H/8, W/8, 8, 8
    matrix = dct_matrix().to(images.device)
    coefficients = matrix @ blocks @ matrix.T
    restored = matrix.T @ (torch.round(coefficients / table) * table) @ matrix
    restored = restored.permute(0, 1, 2, 4, 3, 5).reshape(n, c, h + pad_h, w + pad_w)
    return ((restored + 128) / 255)[:, :, :h, :w].clamp(0, 1)


@dataclass(frozen=True)
class QueryFilter:
    """One query-time filter: blur, then JPEG-like compression, then noise (each optional)."""

    blur: float = 0.0
    quality: float | None = None
    noise: float = 0.0
    seed: int = 0
    bits: int | None = None  # bit depth each pixel is rounded to
    median: int = 0  # median filter window (0: none)
    occlude: float = 0.0  # side of a blacked-out random square, as a share of the image side

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = gaussian_blur(x, self.blur)
        if self.quality is not None:
            x = jpeg_like(x, self.quality)
        if self.noise > 0:
            generator = torch.Generator(device=x.device).manual_seed(self.seed)
            x = (x + self.noise * torch.randn(x.shape, generator=generator, device=x.device)).clamp(0, 1)
        if self.bits is not None:
            x = quantize_pixels(x, self.bits)
        if self.median > 1:
            x = median_filter(x, self.median)
        if self.occlude > 0:
            x = occlude(x, self.occlude, self.seed)
        return x


def quantize_pixels(images: torch.Tensor, bits: int) -> torch.Tensor:
    levels = 2 ** int(bits) - 1
    return torch.round(images.clamp(0, 1) * levels) / levels


def median_filter(images: torch.Tensor, window: int) -> torch.Tensor:
    """Per-channel median over a ``window`` x ``window`` neighbourhood (replicated edges)."""
    before, after = (window - 1) // 2, window // 2
    padded = F.pad(images, (before, after, before, after), mode="replicate")
    patches = padded.unfold(2, window, 1).unfold(3, window, 1)  # n, c, h, w, k, k
    return patches.reshape(*patches.shape[:4], -1).median(dim=-1).values


def occlude(images: torch.Tensor, side_fraction: float, seed: int) -> torch.Tensor:
    """Black out one square per image, each at its own seeded random place."""
    n, _, h, w = images.shape
    side_h, side_w = max(1, round(side_fraction * h)), max(1, round(side_fraction * w))
    generator = torch.Generator().manual_seed(seed + n)
    tops = torch.randint(0, h - side_h + 1, (n,), generator=generator)
    lefts = torch.randint(0, w - side_w + 1, (n,), generator=generator)
    rows = torch.arange(h)[None, :, None]
    cols = torch.arange(w)[None, None, :]
    covered = ((rows >= tops[:, None, None]) & (rows < (tops + side_h)[:, None, None]) &
               (cols >= lefts[:, None, None]) & (cols < (lefts + side_w)[:, None, None]))
    return images.masked_fill(covered[:, None].to(images.device), 0.0)


class InputTransformed(Classifier):
    """The victim's network behind an ordered list of query filters; same parameters and names as
    the victim. Filtering a model that is already filtered appends to its list, so chained filters
    (``input-blur+input-noise``) all apply, in the chain's order."""

    def __init__(self, victim: Classifier, filters: list[QueryFilter]) -> None:
        super().__init__(victim.net, tuple(victim.mean.flatten().tolist()), tuple(victim.std.flatten().tolist()))
        earlier = list(victim.filters) if isinstance(victim, InputTransformed) else []
        self.filters = [*earlier, *filters]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for query_filter in self.filters:
            x = query_filter(x)
        return super().forward(x)


class InputAttack(Attack):
    threat_model = "the model behind the thief's own query front end; no data, weights untouched"
    uses_training_data = False
    def transform(self, strength: float) -> dict:
        raise NotImplementedError

    def apply(self, model: Classifier, strength: float, context: AttackContext) -> Classifier:
        import copy

        added = QueryFilter(seed=context.seed, **self.transform(float(strength)))
        return InputTransformed(copy.deepcopy(model), [added]).eval()


@register_attack("input-blur")
class InputBlur(InputAttack):
    standard = False
    summary = "Gaussian blur on every query"
    strength_meaning = "blur sigma in pixels"
    strengths = (0.5, 1.0, 1.5, 2.0)
    quick_strengths = (0.5, 1.5)
    chain_strength = 1.0

    def transform(self, strength):
        return {"blur": strength}


@register_attack("input-jpeg")
class InputJpeg(InputAttack):
    standard = False
    summary = "JPEG-like DCT compression of every query"
    strength_meaning = "JPEG quality (lower is stronger)"
    strengths = (90, 70, 50, 30, 10)
    quick_strengths = (70, 20)
    chain_strength = 50

    def transform(self, strength):
        return {"quality": strength}


@register_attack("input-noise")
class InputNoise(InputAttack):
    standard = False
    summary = "Gaussian noise on every query"
    strength_meaning = "noise std on the [0, 1] scale"
    strengths = (0.02, 0.05, 0.1, 0.2)
    quick_strengths = (0.05, 0.2)
    chain_strength = 0.05

    def transform(self, strength):
        return {"noise": strength}


@register_attack("input-transform")
class InputTransform(InputAttack):
    summary = "blur + JPEG-like compression + noise on every query"
    strength_meaning = "severity s: blur 1.5s px, quality 100-90s, noise 0.1s"
    strengths = (0.25, 0.5, 0.75, 1.0)
    quick_strengths = (0.5, 1.0)
    chain_strength = 0.5

    def transform(self, strength):
        return {"blur": 1.5 * strength, "quality": 100 - 90 * strength, "noise": 0.1 * strength}


@register_attack("input-quantize")
class InputQuantize(InputAttack):
    standard = False  # input-squeeze applies it, with a median filter after
    summary = "round every query's pixels to a few bits"
    strength_meaning = "bits per pixel (lower is stronger)"
    strengths = (6, 4, 3, 2, 1)
    quick_strengths = (4, 2)
    chain_strength = 4

    def transform(self, strength):
        return {"bits": int(strength)}


@register_attack("input-squeeze")
class InputSqueeze(InputAttack):
    summary = "feature squeezing: 5-bit pixels, then a median filter (Xu et al. 2018)"
    strength_meaning = "median window in pixels"
    strengths = (2, 3, 4)
    quick_strengths = (2, 3)
    chain_strength = 2

    def transform(self, strength):
        return {"bits": 5, "median": int(strength)}


@register_attack("input-occlude")
class InputOcclude(InputAttack):
    summary = "black out a random square of every query"
    strength_meaning = "side of the square as a share of the image side"
    strengths = (0.1, 0.2, 0.3, 0.4)
    quick_strengths = (0.2, 0.4)
    chain_strength = 0.2

    def transform(self, strength):
        return {"occlude": strength}
