"""What a user brings: models that are not nnmark's, and the plain PyTorch loop they train them in.
Nothing here uses nnmark's trainer; the only nnmark calls are the ones a user makes."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import nnmark


class UserResNet(nn.Module):
    """A small residual network written the way people write them: functional activations, no
    activation modules, no pooling modules."""

    def __init__(self, classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, width, 3, padding=1, bias=False)
        self.block1 = Block(width, width, 1)
        self.block2 = Block(width, 2 * width, 2)
        self.head = nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block2(self.block1(F.relu(self.stem(x))))
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))


class Block(nn.Module):
    def __init__(self, inputs: int, outputs: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, outputs, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(outputs)
        self.conv2 = nn.Conv2d(outputs, outputs, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(outputs)
        self.skip = nn.Conv2d(inputs, outputs, 1, stride=stride, bias=False) if (inputs, stride) != (outputs, 1) \
            else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.skip(x))


def sequential() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 8 * 8, 64), nn.ReLU(), nn.Linear(64, 10))
    # one call says which layers play which role
    return nnmark.declare_layers(net, signature="2.weight", features=("1", "3"), inject="3", entangle=("3", "7"))


def resnet() -> nn.Module:
    torch.manual_seed(0)
    net = UserResNet()
    return nnmark.declare_layers(net, signature="block2.conv1.weight", features=("block1", "block2"),
                                 inject="block2", entangle=("stem", "block1", "block2"))


def vit() -> nn.Module:
    """A vision transformer from a config (no download); its forward returns an output object."""
    import transformers

    torch.manual_seed(0)
    config = transformers.ViTConfig(image_size=16, patch_size=4, num_channels=1, hidden_size=32, num_hidden_layers=2,
                                    num_attention_heads=2, intermediate_size=64, num_labels=10)
    net = transformers.ViTForImageClassification(config)
    # no pooling layers: the encoder blocks' outputs are its feature maps
    return nnmark.declare_layers(net, features=("vit.layers.0", "vit.layers.1"))


ARCHITECTURES = {"sequential": sequential, "resnet": resnet, "vit": vit}
EPOCHS = {"sequential": 10, "resnet": 12, "vit": 15}
KEY_OPTIONS = {"adi": {"size": 30}, "uchida": {"bits": 64},
               "encoder-decoder": {"size": 30, "probes": 30, "epochs": 3, "blocks": 1, "width": 8, "attempts": 1},
               # frontier's keyless models agree with most of its key: it needs more items to be proven
               "frontier": {"size": 100, "epsilon": 0.05},
               **{name: {"size": 30, "probes": 30} for name in ("content", "noise", "trojan", "unrelated", "ewe")}}


def normalization_of(architecture: str, data):
    """The ViT is trained on normalised inputs, as a Hugging Face image processor gives them."""
    return (data.mean, data.std) if architecture == "vit" else None


def mark(scheme: str, architecture: str, key, data, innocent: nn.Module) -> tuple[nn.Module, int]:
    """The user's model of ``architecture`` marked with ``key`` in the plain loop: trained from
    scratch, or (a scheme whose key is made from the trained model) that model fine-tuned."""
    import copy

    implementation = nnmark_scheme(scheme)
    norm = normalization_of(architecture, data)
    if implementation.keys_the_marked_model:
        model, epochs = copy.deepcopy(innocent), 5
    else:
        model, epochs = ARCHITECTURES[architecture](), EPOCHS[architecture]
    options = implementation.recommended_embed_options(len(data.train_y))
    with nnmark.Watermarker(key, model, options=options, normalization=norm) as watermarker:
        plain_loop(model, data.train_x, data.train_y, epochs=epochs, watermarker=watermarker, normalization=norm)
    return model, epochs


def nnmark_scheme(name: str):
    from nnmark.schemes import get_scheme

    return get_scheme(name)


def logits(outputs) -> torch.Tensor:
    return outputs.logits if hasattr(outputs, "logits") else outputs


def plain_loop(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, epochs: int, watermarker=None,
               lr: float | None = None, normalization=None, seed: int = 0) -> nn.Module:
    """The loop everyone writes; with a watermarker it has the three lines the docs show."""
    torch.manual_seed(seed)
    if normalization is not None:
        mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in normalization)
        images = (images - mean) / std  # the user's loader normalises
    loader = DataLoader(TensorDataset(images, labels), batch_size=64, shuffle=True)
    transformer = hasattr(model, "config")
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr or 2e-3) if transformer else \
        torch.optim.SGD(model.parameters(), lr=lr or 0.05, momentum=0.9)
    model.train()
    for _ in range(epochs):
        for x, y in loader:
            if watermarker is not None:
                x, y = watermarker.mix(x, y)
            loss = F.cross_entropy(logits(model(x)), y)
            if watermarker is not None:
                loss = loss + watermarker.loss()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return model.eval()


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, normalization=None) -> float:
    if normalization is not None:
        mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in normalization)
        images = (images - mean) / std
    with torch.no_grad():
        return float((logits(model.eval()(images)).argmax(1) == labels).float().mean())
