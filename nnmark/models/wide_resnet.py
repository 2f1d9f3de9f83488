"""Wide residual network WRN-(6N+4)-k (Zagoruyko and Komodakis 2016), as used by Uchida et al.
2017 (seed 004) on CIFAR-10 with N = 1 and k = 4: a 3x3 stem of 16 channels, three groups of N
pre-activation basic blocks with 16k, 32k and 64k channels (the second and third halve the
resolution), then batch norm, ReLU, global average pooling and one linear layer.

Uchida et al.'s published code embeds the signature in the second convolution of the first
residual group, whose weight is 64 x 64 x 3 x 3 at k = 4 (M = 3·3·64 = 576, the paper's M):
``groups.0.0.conv2.weight`` here (:data:`UCHIDA_LAYER`)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nnmark.errors import NNMarkError
from nnmark.models.registry import register_model

UCHIDA_LAYER = "groups.0.0.conv2.weight"


class PreActBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.dropout = dropout
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = F.relu(self.bn1(x))
        # The projection reads the activated input, as in the reference implementation.
        residual = x if self.shortcut is None else self.shortcut(activated)
        out = self.conv1(activated)
        out = F.relu(self.bn2(out))
        if self.dropout:
            out = F.dropout(out, self.dropout, self.training)
        return self.conv2(out) + residual


class WideResNet(nn.Module):
    # The group Uchida et al. sign (the second of three); its activations are functional (F.relu),
    # so the roles name the groups whose outputs hold them.
    nnmark_layers = {"signature": "groups.1.0.conv2.weight", "features": ("groups.0", "groups.1", "groups.2"),
                     "inject": "groups.2", "entangle": ("groups.0", "groups.1", "groups.2")}

    def __init__(self, num_classes: int, input_shape: tuple[int, int, int], depth: int = 10,
                 widen: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise NNMarkError("a wide ResNet's depth is 6N+4", field="depth", expected="10, 16, 22, 28, ...",
                              got=depth)
        blocks = (depth - 4) // 6
        widths = [16 * widen, 32 * widen, 64 * widen]
        self.stem = nn.Conv2d(input_shape[0], 16, 3, padding=1, bias=False)
        in_planes, groups = 16, []
        for index, planes in enumerate(widths):
            layers = []
            for block in range(blocks):
                stride = 2 if (index > 0 and block == 0) else 1
                layers.append(PreActBlock(in_planes, planes, stride, dropout))
                in_planes = planes
            groups.append(nn.Sequential(*layers))
        self.groups = nn.Sequential(*groups)
        self.bn = nn.BatchNorm2d(in_planes)
        self.linear = nn.Linear(in_planes, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn(self.groups(self.stem(x))))
        return self.linear(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


@register_model("wide-resnet")
def wide_resnet(num_classes: int, input_shape: tuple[int, int, int], depth: int = 10, widen: int = 4,
                dropout: float = 0.0) -> nn.Module:
    return WideResNet(num_classes, input_shape, depth=depth, widen=widen, dropout=dropout)
