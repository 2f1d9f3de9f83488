"""Content trigger set: training images stamped with visible text, all labelled with one target
class. Zhang et al., "Protecting Intellectual Property of Deep Neural Networks with
Watermarking", AsiaCCS 2018 (seed 002), their WM_content ("TEST" written on the image).

Where we differ: position, size and colour are options (the paper fixed them per dataset), and
the text is drawn with PIL's built-in font, stretched to the box.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from nnmark.errors import NNMarkError
from nnmark.schemes.base import KeygenContext, register_scheme, require_tensor
from nnmark.schemes.one_target import OneTargetOptions, OneTargetScheme
from nnmark.schemes.patterns import parse_color, text_mask


@dataclass
class ContentOptions(OneTargetOptions):
    text: str = field(default="TEST", metadata={"help": "Text stamped on each image."})
    x: float = field(default=0.0, metadata={"help": "Left edge of the text box, fraction of width."})
    y: float = field(default=0.6, metadata={"help": "Top edge of the text box, fraction of height."})
    box_width: float = field(default=1.0, metadata={"help": "Text box width, fraction of width."})
    box_height: float = field(default=0.4, metadata={"help": "Text box height, fraction of height."})
    color: str = field(default="1.0", metadata={"help": "Ink colour: one value or r,g,b in [0, 1]."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (0 <= self.x < 1 and 0 <= self.y < 1 and 0 < self.box_width <= 1 and 0 < self.box_height <= 1):
            raise ValueError("x, y must be in [0, 1) and box_width, box_height in (0, 1]")


@register_scheme("content")
class ContentTriggerSet(OneTargetScheme):
    summary = "training images stamped with visible text, one target class (Zhang et al. 2018)"
    KeygenOptions = ContentOptions

    def make_triggers(self, sources, context: KeygenContext, options: ContentOptions, generator):
        channels, height, width = context.input_shape
        top, left = int(options.y * height), int(options.x * width)
        box_h = min(height - top, max(1, round(options.box_height * height)))
        box_w = min(width - left, max(1, round(options.box_width * width)))
        if box_h < 1 or box_w < 1:
            raise NNMarkError("text box falls outside the image", field="x/y")
        mask = torch.zeros(1, height, width)
        mask[0, top:top + box_h, left:left + box_w] = text_mask(options.text, box_h, box_w)
        color = parse_color(options.color, channels)
        return sources * (1 - mask) + color * mask, {"mask": mask}

    def restamp(self, key, clean):
        mask = require_tensor(key, "mask", torch.float32, 3)
        try:
            color = parse_color(str(key.params.get("color")), clean.shape[1])
        except (ValueError, NNMarkError):
            raise NNMarkError("is not a colour", field="params.color", got=key.params.get("color")) from None
        if mask.shape[1:] != clean.shape[2:]:
            raise NNMarkError("mask does not fit the images", field="mask")
        return clean * (1 - mask) + color * mask
