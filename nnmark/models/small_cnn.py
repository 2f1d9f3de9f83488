"""A small CNN for digits and MNIST-sized inputs: two conv blocks, then two linear layers."""
from __future__ import annotations

import torch
from torch import nn

from nnmark.models.registry import register_model


class SmallCNN(nn.Module):
    # the conv a 256-bit signature fits (16·3·3 < 256 ≤ 32·3·3); the maps entering each pooling
    # stage; the last three activations
    nnmark_layers = {"signature": "features.10.weight", "features": ("features.5", "features.12"),
                     "inject": "features.12", "entangle": ("features.9", "features.12", "classifier.2")}

    def __init__(self, num_classes: int, input_shape: tuple[int, int, int], width: int = 16,
                 hidden: int = 128) -> None:
        super().__init__()
        channels = input_shape[0]
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(inplace=True),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(2 * width * 4, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_model("small-cnn")
def small_cnn(num_classes: int, input_shape: tuple[int, int, int], width: int = 16,
              hidden: int = 128) -> nn.Module:
    return SmallCNN(num_classes, input_shape, width=width, hidden=hidden)
