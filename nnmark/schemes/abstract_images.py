"""Procedural abstract images for trigger sets.

Adi et al. used a set of abstract-art images. We draw our own so a key is reproducible from a seed
and needs no download: a smooth colour field (a two-colour gradient with a low-frequency wave),
then a few filled ellipses, rotated rectangles, triangles and thick curved strokes, blended with
random opacity. Rendered at 4x and box-filtered down, so edges are anti-aliased like real
pictures rather than aliased noise; above 64 pixels a side at 2x, above 128 at 1x, where a pixel
is small enough that the edges need no help (a 224x224 image took 0.64 s at 4x).
"""
from __future__ import annotations

import numpy as np
import torch

SUPERSAMPLE = 4


def _colour(rng: np.random.Generator, channels: int) -> np.ndarray:
    return rng.uniform(0.0, 1.0, size=(channels, 1, 1))


def _rotated(xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, angle: float):
    c, s = np.cos(angle), np.sin(angle)
    dx, dy = xx - cx, yy - cy
    return c * dx + s * dy, -s * dx + c * dy


def _background(rng, channels, xx, yy) -> np.ndarray:
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * (xx - 0.5) + np.sin(angle) * (yy - 0.5)) + 0.5
    frequency = rng.uniform(0.5, 3.0)
    wave = 0.5 + 0.5 * np.sin(2 * np.pi * frequency * (xx * np.cos(angle + 1) + yy * np.sin(angle + 1))
                              + rng.uniform(0, 2 * np.pi))
    mix = np.clip(0.7 * ramp + 0.3 * wave, 0, 1)[None]
    return _colour(rng, channels) * (1 - mix) + _colour(rng, channels) * mix


def _shape_mask(rng, xx, yy) -> np.ndarray:
    kind = rng.integers(0, 4)
    cx, cy = rng.uniform(0.1, 0.9, size=2)
    angle = rng.uniform(0, np.pi)
    if kind == 0:  # ellipse
        u, v = _rotated(xx, yy, cx, cy, angle)
        a, b = rng.uniform(0.08, 0.35, size=2)
        return (u / a) ** 2 + (v / b) ** 2 <= 1.0
    if kind == 1:  # rotated rectangle
        u, v = _rotated(xx, yy, cx, cy, angle)
        a, b = rng.uniform(0.05, 0.3, size=2)
        return (np.abs(u) <= a) & (np.abs(v) <= b)
    if kind == 2:  # triangle: inside when on the same side of all three edges
        points = rng.uniform(0.0, 1.0, size=(3, 2))
        signs = []
        for i in range(3):
            (x0, y0), (x1, y1) = points[i], points[(i + 1) % 3]
            signs.append((x1 - x0) * (yy - y0) - (y1 - y0) * (xx - x0) >= 0)
        return (signs[0] == signs[1]) & (signs[1] == signs[2])
    # a thick stroke along a quadratic Bézier curve
    control = rng.uniform(-0.1, 1.1, size=(3, 2))
    t = np.linspace(0, 1, 48)[:, None]
    curve = (1 - t) ** 2 * control[0] + 2 * (1 - t) * t * control[1] + t ** 2 * control[2]
    width = rng.uniform(0.02, 0.07)
    dist2 = (xx[None] - curve[:, 0, None, None]) ** 2 + (yy[None] - curve[:, 1, None, None]) ** 2
    return dist2.min(axis=0) <= width ** 2


def supersampling(height: int, width: int) -> int:
    side = max(height, width)
    return SUPERSAMPLE if side <= 64 else 2 if side <= 128 else 1


def abstract_image(rng: np.random.Generator, channels: int, height: int, width: int) -> np.ndarray:
    factor = supersampling(height, width)
    h, w = height * factor, width * factor
    yy, xx = np.meshgrid((np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w, indexing="ij")
    canvas = _background(rng, channels, xx, yy)
    for _ in range(rng.integers(3, 8)):
        mask = _shape_mask(rng, xx, yy)[None]
        opacity = rng.uniform(0.6, 1.0)
        canvas = np.where(mask, (1 - opacity) * canvas + opacity * _colour(rng, channels), canvas)
    canvas = canvas.reshape(channels, height, factor, width, factor).mean(axis=(2, 4))
    return np.clip(canvas, 0.0, 1.0)


def abstract_images(count: int, input_shape: tuple[int, int, int], seed: int) -> torch.Tensor:
    """``count`` abstract images of shape ``input_shape`` (C, H, W) in [0, 1], from ``seed``."""
    rng = np.random.default_rng(seed)
    channels, height, width = input_shape
    images = np.stack([abstract_image(rng, channels, height, width) for _ in range(count)])
    return torch.from_numpy(images.astype(np.float32))
