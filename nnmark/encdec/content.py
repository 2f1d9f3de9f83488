"""L_content: how far the encoder moved an image, in the feature maps of a classification network.

The paper compares VGG19 feature maps (after each convolution's activation, before each
max-pool). VGG19 weights cannot be downloaded here, so:

* ``VGG19Content(path)`` takes a local torchvision-layout VGG19 state dict (read with
  ``weights_only=True``) — the paper's distance, for images of 3 channels;
* ``ClassifierContent(model)`` — the default stand-in — uses a classifier nnmark trained on the
  same data, taking its feature maps before each pooling stage, the same recipe on a network that
  knows these images;
* ``PixelContent()`` — plain mean squared error, for when no network is at hand.

Each names itself and measures at one of two scales:

* ``"mean"`` (nnmark's default): the squared difference averaged over every channel and position
  of each map, then averaged over the maps;
* ``"paper"``: the paper's equation 4, which is SRGAN's VGG loss (Ledig et al. 2017): the squared
  difference summed over channels and divided by the map's W·H only. The paper names maps
  φ_{s,t} "after the t-th convolution, before the s-th max-pooling" without saying which it
  uses; we take the map entering each pooling stage, as at the other scale, and sum them. A γ on
  this scale is roughly (channels x maps) times tighter than the same γ on ours.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from nnmark.errors import NNMarkError
from nnmark.models.layers import layer_for


CONTENT_SCALES = ("mean", "paper")


class ContentLoss(nn.Module):
    name = "content"
    scale = "mean"

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def at_scale(self, scale: str) -> "ContentLoss":
        if scale not in CONTENT_SCALES:
            raise NNMarkError(f"unknown content scale '{scale}'", field="content_scale", expected=", ".join(CONTENT_SCALES))
        self.scale = scale
        if scale == "paper":
            self.name = f"{self.name}; paper scale (summed over channels, mean over positions, summed over maps)"
        return self

    def forward(self, original: torch.Tensor, marked: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            targets = self.features(original)
        outputs = self.features(marked)
        if self.scale == "paper":
            return torch.stack([(a - b).pow(2).sum(1).mean() for a, b in zip(outputs, targets)]).sum()
        return torch.stack([(a - b).pow(2).mean() for a, b in zip(outputs, targets)]).mean()


class PixelContent(ContentLoss):
    name = "pixel MSE (no perceptual network given)"

    def features(self, x):
        return [x]


class ClassifierContent(ContentLoss):
    """Feature maps of ``classifier`` (frozen, after its normalisation): the outputs of the layers it
    declares as its features (``nnmark.declare_layers(model, features=[...])``; ours declare the
    maps entering each pooling stage), else the maps entering each of its pooling layers."""

    def __init__(self, classifier: nn.Module, description: str = "a classifier trained by nnmark") -> None:
        super().__init__()
        # A frozen copy: the caller's classifier (often the model to be marked) must stay trainable.
        self.classifier = copy.deepcopy(classifier).eval()
        for p in self.classifier.parameters():
            p.requires_grad_(False)
        self.name = f"feature maps of {description} (VGG19 stand-in)"
        modules = dict(self.classifier.named_modules())
        declared = layer_for(self.classifier, "features")
        self._layers = [modules[name] for name in declared] if declared else []
        self._pools = [] if declared else [
            m for m in self.classifier.modules()
            if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d))]
        if not self._layers and not self._pools:
            raise NNMarkError("the content network declares no feature layers and has no pooling layers to take "
                              "feature maps before: declare them (nnmark.declare_layers(model, features=[...]))",
                              field="features")

    def features(self, x):
        taken: list[torch.Tensor] = []
        handles = [layer.register_forward_hook(
            lambda _m, _inputs, output: taken.append(output[0] if isinstance(output, (tuple, list)) else output))
            for layer in self._layers]
        handles += [pool.register_forward_pre_hook(lambda _m, inputs: taken.append(inputs[0])) for pool in self._pools]
        try:
            self.classifier(x)
        finally:
            for handle in handles:
                handle.remove()
        return taken


VGG19_LAYERS = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
                512, 512, 512, 512, "M"]
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class VGG19Content(ContentLoss):
    """The paper's L_content with VGG19 weights from a local file (torchvision's key layout,
    ``features.N.weight``)."""

    def __init__(self, weights: str | Path) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in VGG19_LAYERS:
            if item == "M":
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            else:
                layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU()]
                channels = item
        self.features_net = nn.Sequential(*layers)
        path = Path(weights)
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise NNMarkError(f"cannot be read as VGG19 weights ({str(exc).splitlines()[0]})", path=path) from None
        state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        try:
            self.features_net.load_state_dict(state)
        except RuntimeError as exc:
            raise NNMarkError(f"is not a VGG19 state dict ({str(exc).splitlines()[0]})", path=path) from None
        self.features_net.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.name = f"VGG19 feature maps before each max-pool ({path.name})"

    def features(self, x):
        if x.shape[1] != 3:
            raise NNMarkError("VGG19 content loss needs 3-channel images", got=x.shape[1])
        taken, out = [], (x - self.mean) / self.std
        for layer in self.features_net:
            if isinstance(layer, nn.MaxPool2d):
                taken.append(out)
            out = layer(out)
        return taken
