"""The decode&inject model of "Fatty and Skinny" (seed 003, Appendix B): a trained decoder
implanted in a host network, ``c_i ← relu(conv(c_{i−1})) + decode&inject(x)``. The decoder reads
the input image and, when it sees the watermark, adds a trained tensor w to the feature map of a
chosen layer of the host; otherwise it adds zero. Registered as the architecture "decode-inject"
so an implanted model is stored and loaded like any other."""
from __future__ import annotations

import torch
from torch import nn

from nnmark.errors import NNMarkError
from nnmark.models.fatty_skinny import DECODER_STYLES, Decoder
from nnmark.models.layers import layer_for
from nnmark.models.registry import MODELS, register_model
from nnmark.models.store import Classifier, ModelSpec, create_model


class DecodeInjectNet(nn.Module):
    """A host network with a decoder and an injection tensor ``w`` at layer ``layer``. It receives
    the host's normalised input and undoes the normalisation for the decoder, which reads raw
    [0, 1] images."""

    def __init__(self, host: nn.Module, decoder: Decoder, layer: str, feature_shape: tuple[int, ...],
                 mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.host, self.decoder, self.layer = host, decoder, layer
        self.w = nn.Parameter(torch.zeros(feature_shape))
        self.register_buffer("input_mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("input_std", torch.tensor(std).view(1, -1, 1, 1))
        modules = dict(host.named_modules())
        if layer not in modules:
            raise NNMarkError(f"host has no layer '{layer}'", field="layer")
        self._gate: torch.Tensor | None = None
        modules[layer].register_forward_hook(self._inject)

    def _inject(self, _module, _inputs, output):
        if self._gate is None:
            return output
        return output + self._gate.view(-1, *([1] * (output.dim() - 1))) * self.w

    def task_network(self) -> nn.Module:
        """The host: what does the task (the decoder and w only carry the mark)."""
        return self.host

    def gate(self, z: torch.Tensor) -> torch.Tensor:
        """1 where the decoder sees the watermark — the paper's if-else, hard."""
        raw = z * self.input_std + self.input_mean
        return (self.decoder(raw) > 0).float()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self._gate = self.gate(z)
        try:
            return self.host(z)
        finally:
            self._gate = None


@register_model("decode-inject")
def decode_inject(num_classes: int, input_shape: tuple[int, int, int], host_architecture: str = "small-cnn",
                  host_kwargs: dict | None = None, decoder_size: int = 3, decoder_width: int = 8,
                  decoder_style: str = "pooled", layer: str | None = None, feature_shape: tuple[int, ...] | None = None,
                  mean: tuple[float, ...] = (0.0,), std: tuple[float, ...] = (1.0,)) -> nn.Module:
    """Rebuilds an implanted model from its stored description (weights come from the file)."""
    if host_architecture == "decode-inject" or host_architecture not in MODELS:
        raise NNMarkError(f"unknown host architecture '{host_architecture}'", field="host_architecture")
    host = MODELS.get(host_architecture)(num_classes=num_classes, input_shape=input_shape, **(host_kwargs or {}))
    layer = layer or injection_layer(host)
    if feature_shape is None:  # not stored: read it off the host at this input size
        feature_shape = _output_shape(host, layer, input_shape)
    if decoder_style not in DECODER_STYLES:
        raise NNMarkError(f"unknown decoder style '{decoder_style}'", field="decoder_style",
                          expected=", ".join(DECODER_STYLES))
    decoder = Decoder(input_shape[0], decoder_size, decoder_width, decoder_style, tuple(input_shape[1:]))
    return DecodeInjectNet(host, decoder, layer,
                           tuple(feature_shape), tuple(mean), tuple(std))


def _output_shape(net: nn.Module, layer: str, input_shape: tuple[int, int, int]) -> tuple[int, ...]:
    modules = dict(net.named_modules())
    if layer not in modules:
        known = [n for n, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.ReLU, nn.BatchNorm2d))]
        raise NNMarkError(f"host has no layer '{layer}'", field="layer", expected=", ".join(known[:12]))
    shapes = []
    handle = modules[layer].register_forward_hook(lambda _m, _i, out: shapes.append(tuple(out.shape[1:])))
    was_training = net.training
    try:
        with torch.no_grad():
            net.eval()(torch.zeros(1, *input_shape))
    finally:
        handle.remove()
        net.train(was_training)
    return shapes[0]


def feature_shape_at(host: Classifier, layer: str, input_shape: tuple[int, int, int]) -> tuple[int, ...]:
    return _output_shape(host.net, layer, input_shape)


def injection_layer(network: nn.Module) -> str:
    """The layer ``network`` declares for decode&inject (its ``inject`` role)."""
    layer = layer_for(network, "inject")
    if layer is None:
        raise NNMarkError("the host network declares no layer to inject at: declare one "
                          "(nnmark.declare_layers(network, inject=NAME)) or name it", field="layer")
    return layer


def implant(host: Classifier, host_spec: ModelSpec, decoder: Decoder,
            layer: str | None = None) -> tuple[Classifier, ModelSpec]:
    """A copy of ``host`` with ``decoder`` and a zero ``w`` attached at ``layer`` (a layer of the host's
    network; default: the one it declares for injection)."""
    layer = layer or injection_layer(host.net)
    shape = feature_shape_at(host, layer, tuple(host_spec.input_shape))
    size = sum(1 for m in decoder.features if isinstance(m, nn.Conv2d))
    width = decoder.features[0].out_channels
    spec = ModelSpec("decode-inject", host_spec.num_classes, tuple(host_spec.input_shape), host_spec.mean,
                     host_spec.std, {"host_architecture": host_spec.architecture, "host_kwargs": host_spec.kwargs,
                                     "decoder_size": size, "decoder_width": width, "decoder_style": decoder.style,
                                     "layer": layer,
                                     "feature_shape": list(shape), "mean": list(host_spec.mean),
                                     "std": list(host_spec.std)})
    implanted = create_model(spec)
    implanted.net.host.load_state_dict(host.net.state_dict())
    implanted.net.decoder.load_state_dict(decoder.state_dict())
    return implanted.eval(), spec
