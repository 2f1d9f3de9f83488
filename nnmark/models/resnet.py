"""ResNet-18 for 32x32 inputs, as used by Adi et al. 2018 (seed 000): a 3x3 stride-1 stem and no
max-pool, then the usual four stages of two basic blocks each (He et al. 2016)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nnmark.models.registry import register_model


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    # Its activations are functional (F.relu), so the roles name the stages whose outputs hold them.
    nnmark_layers = {"signature": "layer3.0.conv1.weight", "features": ("layer1", "layer2", "layer3", "layer4"),
                     "inject": "layer4", "entangle": ("layer3", "layer4.0", "layer4")}

    def __init__(self, num_blocks: list[int], num_classes: int, in_channels: int = 3,
                 width: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        stages, planes = [], width
        in_planes = width
        for index, blocks in enumerate(num_blocks):
            stride = 1 if index == 0 else 2
            layers = []
            for block_stride in [stride] + [1] * (blocks - 1):
                layers.append(BasicBlock(in_planes, planes, block_stride))
                in_planes = planes
            stages.append(nn.Sequential(*layers))
            planes *= 2
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.linear = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


@register_model("resnet18")
def resnet18(num_classes: int, input_shape: tuple[int, int, int], width: int = 64) -> nn.Module:
    return CifarResNet([2, 2, 2, 2], num_classes, in_channels=input_shape[0], width=width)
