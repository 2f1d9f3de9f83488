"""Small image-making helpers for trigger sets: text masks, letter images, colour parsing."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from nnmark.errors import NNMarkError


def text_mask(text: str, height: int, width: int) -> torch.Tensor:
    """``text`` rendered with PIL's built-in font and stretched to fill a ``height`` x ``width`` box;
    values in [0, 1] (1 = ink), anti-aliased by the resize."""
    from PIL import Image, ImageDraw, ImageFont

    if not text:
        raise NNMarkError("text must not be empty", field="text")
    font = ImageFont.load_default()
    left, top, right, bottom = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), text, font=font)
    canvas = Image.new("L", (right - left + 2, bottom - top + 2), 0)
    ImageDraw.Draw(canvas).text((1 - left, 1 - top), text, fill=255, font=font)
    ink = torch.from_numpy(np.asarray(canvas, dtype=np.float32) / 255.0)[None, None]
    return F.interpolate(ink, size=(max(1, height), max(1, width)), mode="area")[0, 0].clamp(0, 1)


def parse_color(text: str, channels: int) -> torch.Tensor:
    """'0.9' (every channel) or 'r,g,b' in [0, 1], as a (C, 1, 1) tensor."""
    try:
        values = [float(part) for part in str(text).split(",")]
    except ValueError:
        values = []
    if len(values) == 1:
        values = values * channels
    if len(values) != channels or not all(0.0 <= v <= 1.0 for v in values):
        raise NNMarkError("must be one value or one per channel, each in [0, 1]", field="color",
                          expected=f"e.g. '1.0' or {','.join(['0.5'] * channels)}", got=text)
    return torch.tensor(values, dtype=torch.float32).view(channels, 1, 1)


def letter_images(count: int, input_shape: tuple[int, int, int], generator: torch.Generator) -> torch.Tensor:
    """Bright capital letters on a dark ground, randomly placed and scaled: an unrelated domain for
    a digit classifier that needs no download."""
    channels, height, width = input_shape
    letters = torch.randint(0, 26, (count,), generator=generator)
    images = torch.zeros(count, channels, height, width)
    for i, letter in enumerate(letters.tolist()):
        box_h = int(height * (0.6 + 0.4 * torch.rand(1, generator=generator).item()))
        box_w = int(width * (0.4 + 0.4 * torch.rand(1, generator=generator).item()))
        top = int(torch.randint(0, height - box_h + 1, (1,), generator=generator))
        left = int(torch.randint(0, width - box_w + 1, (1,), generator=generator))
        images[i, :, top:top + box_h, left:left + box_w] = text_mask(chr(ord("A") + letter), box_h, box_w)
    return images


def to_shape(images: torch.Tensor, input_shape: tuple[int, int, int]) -> torch.Tensor:
    """Resize images to (H, W) and match the channel count (grey → tiled, colour → mean)."""
    channels, height, width = input_shape
    images = F.interpolate(images, size=(height, width), mode="bilinear", align_corners=False)
    if images.shape[1] == channels:
        return images
    if images.shape[1] == 1:
        return images.expand(-1, channels, -1, -1).contiguous()
    return images.mean(dim=1, keepdim=True).expand(-1, channels, -1, -1).contiguous()
