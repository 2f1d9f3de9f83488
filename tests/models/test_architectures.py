import pytest
import torch
from torch import nn

from nnmark.errors import NNMarkError
from nnmark.models import MODELS, ModelSpec, create_model
from nnmark.models.wide_resnet import UCHIDA_LAYER


def test_resnet18_follows_adi_et_al():
    model = create_model(ModelSpec("resnet18", 10, (3, 32, 32), (0.5,) * 3, (0.25,) * 3), seed=0).net
    stem = model.conv1
    assert stem.kernel_size == (3, 3) and stem.stride == (1, 1)  # 3x3 stride-1 stem for 32x32
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())  # no max-pool
    assert [len(stage) for stage in (model.layer1, model.layer2, model.layer3, model.layer4)] == [2, 2, 2, 2]
    assert sum(p.numel() for p in model.parameters()) == 11_173_962  # the standard CIFAR ResNet-18
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_wide_resnet_follows_zagoruyko_and_uchida():
    def build(**kwargs):
        return create_model(ModelSpec("wide-resnet", 10, (3, 32, 32), (0.5,) * 3, (0.25,) * 3, kwargs), seed=0).net

    # WRN-28-10 and WRN-16-8 have the parameter counts of the reference implementation
    assert sum(p.numel() for p in build(depth=28, widen=10).parameters()) == 36_479_194
    assert sum(p.numel() for p in build(depth=16, widen=8).parameters()) == 10_961_370
    uchida = build()  # N = 1, k = 4
    assert [len(group) for group in uchida.groups] == [1, 1, 1]
    signed = dict(uchida.named_parameters())[UCHIDA_LAYER]  # the published code's layer: M = 3·3·64 = 576
    assert signed.shape == (64, 64, 3, 3) and signed[0].numel() == 576
    assert uchida(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(NNMarkError, match="6N\\+4"):
        build(depth=12)


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_handles_grayscale_and_colour(name):
    for shape in ((1, 16, 16), (3, 32, 32)):
        spec = ModelSpec(name, 7, shape, (0.5,) * shape[0], (0.5,) * shape[0])
        assert create_model(spec, seed=0)(torch.rand(2, *shape)).shape == (2, 7)


def test_unknown_architecture_and_bad_kwargs():
    with pytest.raises(NNMarkError, match="unknown model 'vgg'"):
        create_model(ModelSpec("vgg", 10, (3, 32, 32), (0.5,) * 3, (0.5,) * 3))
    with pytest.raises(NNMarkError, match="bad arguments for model 'small-cnn'"):
        create_model(ModelSpec("small-cnn", 10, (1, 8, 8), (0.5,), (0.5,), {"depth": 3}))
    with pytest.raises(NNMarkError, match="normalisation"):
        create_model(ModelSpec("small-cnn", 10, (3, 8, 8), (0.5,), (0.5,)))
