import pytest
import torch
from torch import nn

from nnmark.encdec.baselines import SWM, train_detector, trojan_stamp
from nnmark.encdec.content import ClassifierContent, PixelContent, VGG19Content
from nnmark.encdec.metrics import decoding_success, entropy_ratio, image_damage, shannon_entropy
from nnmark.models.fatty_skinny import Decoder, Encoder
from nnmark.errors import NNMarkError
from nnmark.models import ModelSpec, create_model


@pytest.mark.parametrize("shape", [(1, 16, 16), (3, 32, 32)])
def test_encoder_keeps_shape_with_stride_one_convs(shape):
    encoder = Encoder(shape[0], blocks=3, width=8)
    x = torch.rand(2, *shape)
    out = encoder(x)
    assert out.shape == x.shape and 0 <= out.min() and out.max() <= 1
    assert all(m.stride == (1, 1) for m in encoder.modules() if isinstance(m, nn.Conv2d))
    attention = encoder.attention(x)
    assert attention.shape == (2, 1, *shape[1:])
    assert torch.allclose(attention.mean(dim=(1, 2, 3)), torch.ones(2))  # a softmax map, rescaled to mean 1
    assert len(encoder.blocks) == 3


@pytest.mark.parametrize("size", [1, 2, 3])
def test_decoder_is_tiny_and_sized(size):
    decoder = Decoder(1, size)
    assert sum(isinstance(m, nn.Conv2d) for m in decoder.modules()) == size
    assert decoder(torch.rand(5, 1, 16, 16)).shape == (5,)
    with pytest.raises(ValueError):
        Decoder(1, 4)


@pytest.mark.parametrize("size, image", [(1, (32, 32)), (3, (32, 32)), (3, (16, 16))])
def test_dcgan_decoder_is_radford_et_al_s_discriminator(size, image):
    decoder = Decoder(3, size, style="dcgan", image_size=image)
    convs = [m for m in decoder.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256][:size]
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) for c in convs)
    # batch norm after every convolution but the first; the head is one convolution over what remains
    assert sum(isinstance(m, nn.BatchNorm2d) for m in decoder.features) == size - 1
    assert decoder.head.kernel_size == tuple(side // 2 ** size for side in image)
    assert decoder.batch_dependent == (size > 1)
    assert decoder.eval()(torch.rand(5, 3, *image)).shape == (5,)
    with pytest.raises(ValueError, match="image_size"):
        Decoder(3, size, style="dcgan")
    with pytest.raises(ValueError, match="style"):
        Decoder(3, size, style="resnet")


def test_a_batch_normalised_decoder_sees_both_kinds_in_one_batch():
    from nnmark.encdec.train import decoder_loss

    seen = []
    decoder = Decoder(1, 2, style="dcgan", image_size=(16, 16)).train()
    decoder.register_forward_pre_hook(lambda _m, inputs: seen.append(len(inputs[0])))
    decoder_loss(decoder, torch.zeros(4, 1, 16, 16), torch.ones(4, 1, 16, 16))
    assert seen == [8]  # one batch: its statistics cannot tell marked from unmarked
    seen.clear()
    pooled = Decoder(1, 2).train()
    pooled.register_forward_pre_hook(lambda _m, inputs: seen.append(len(inputs[0])))
    decoder_loss(pooled, torch.zeros(4, 1, 16, 16), torch.ones(4, 1, 16, 16))
    assert seen == [4, 4]  # no batch statistics: each kind is read alone


def test_paper_scale_sums_channels_and_divides_by_positions_only():
    x = torch.rand(4, 1, 16, 16)
    model = create_model(ModelSpec("small-cnn", 10, (1, 16, 16), (0.3,), (0.3,)), seed=0)
    moved = (x + 0.1).clamp(0, 1)
    ours, paper = ClassifierContent(model), ClassifierContent(model).at_scale("paper")
    maps = [(a - b).pow(2) for a, b in zip(ours.features(moved), ours.features(x))]
    assert ours(x, moved).item() == pytest.approx(torch.stack([m.mean() for m in maps]).mean().item(), rel=1e-5)
    assert paper(x, moved).item() == pytest.approx(sum(m.sum() / (m.shape[0] * m.shape[2] * m.shape[3]) for m in maps).item(),
                                                   rel=1e-5)
    assert paper(x, moved).item() > 10 * ours(x, moved).item()  # many channels: the paper's γ is far tighter
    assert "paper scale" in paper.name and paper.scale == "paper"
    with pytest.raises(NNMarkError, match="content scale"):
        PixelContent().at_scale("median")


def test_an_implanted_dcgan_decoder_is_rebuilt_from_its_spec(tmp_path):
    from nnmark.models.decode_inject import implant
    from nnmark.models.store import load_model, save_model

    spec = ModelSpec("small-cnn", 10, (1, 16, 16), (0.3,), (0.3,))
    host = create_model(spec, seed=0)
    decoder = Decoder(1, 3, style="dcgan", image_size=(16, 16))
    with torch.no_grad():  # running statistics that are not the defaults, so a lost buffer would show
        decoder.train()(torch.rand(16, 1, 16, 16))
    decoder.eval()
    implanted, implanted_spec = implant(host, spec, decoder, "features.0")
    assert implanted_spec.kwargs["decoder_style"] == "dcgan"
    save_model(implanted, implanted_spec, tmp_path / "m")
    loaded = load_model(tmp_path / "m").model
    x = torch.rand(3, 1, 16, 16)
    assert torch.allclose(loaded.net.decoder(x), decoder(x), atol=1e-6)


def test_content_losses_measure_change():
    x = torch.rand(4, 1, 16, 16)
    model = create_model(ModelSpec("small-cnn", 10, (1, 16, 16), (0.3,), (0.3,)), seed=0)
    for loss in (PixelContent(), ClassifierContent(model)):
        assert loss(x, x).item() == 0
        assert loss(x, (x + 0.1).clamp(0, 1)).item() > 0
    # features before each pooling stage of small-cnn: the max-pool and the final adaptive pool
    assert len(ClassifierContent(model).features(x)) == 2


def test_vgg19_weights_file_errors(tmp_path):
    (tmp_path / "vgg.pth").write_bytes(b"nope")
    with pytest.raises(NNMarkError, match="VGG19 weights"):
        VGG19Content(tmp_path / "vgg.pth")
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(NNMarkError, match="not a VGG19 state dict"):
        VGG19Content(tmp_path / "wrong.pth")


def test_metrics():
    x = torch.rand(6, 1, 16, 16)
    damage = image_damage(x, x)
    assert damage["ms_ssim"] == pytest.approx(1.0) and damage["entropy_ratio"] == pytest.approx(1.0)
    assert damage["psnr"] > 100 or damage["psnr"] == float("inf")
    noisy = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    assert 20 < image_damage(noisy, x)["psnr"] < 30
    flat = torch.full((1, 1, 4, 4), 0.5)
    assert shannon_entropy(flat).item() == pytest.approx(0.0, abs=1e-6)
    assert entropy_ratio(torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)) == pytest.approx(1.0, abs=0.1)
    result = decoding_success(lambda images: images.mean(dim=(1, 2, 3)) > 0.5, torch.zeros(4, 1, 2, 2), torch.ones(4, 1, 2, 2))
    assert result == {"decoding_success_unmarked": 1.0, "decoding_success_marked": 1.0, "decoding_success": 1.0}


@pytest.mark.parametrize("pattern", ["0101010101", "0000100001"])
def test_swm_hides_and_finds_its_bits(digits, pattern):
    swm = SWM(pattern, seed=1)
    marked = swm.encode(digits.test_x[:50])
    assert swm.decode(marked).all()
    assert (marked - digits.test_x[:50]).abs().max() <= 1.0
    partitions = swm.partitions(256)
    assert len(partitions) == 10 and sum(len(p) for p in partitions) == 256


def test_trojan_baseline_is_detected(digits):
    detector = train_detector(Decoder(1, 3), digits.train_x, trojan_stamp(digits.train_x), epochs=3)
    with torch.no_grad():
        result = decoding_success(lambda x: detector(x) > 0, digits.test_x, trojan_stamp(digits.test_x))
    assert result["decoding_success"] > 0.95


def test_keygen_trains_afresh_below_the_decoding_bar_and_warns_when_it_never_reaches_it(digits):
    from nnmark.api import generate_key
    from nnmark.schemes import get_scheme

    tiny = {"size": 12, "probes": 12, "epochs": 1, "blocks": 1, "width": 4, "decoder_size": 1, "content": "pixel"}
    make = lambda **options: generate_key("encoder-decoder", num_classes=10, input_shape=digits.input_shape,  # noqa: E731
                                          dataset=digits, seed=5, options={**tiny, **options})
    unreachable = make(min_decoding=1.0, attempts=2).params["quality"]
    assert unreachable["attempts"] == 2 and "below 100%" in unreachable["warning"]
    first = make(min_decoding=0.0, attempts=3)
    assert first.params["quality"]["attempts"] == 1 and "warning" not in first.params["quality"]
    assert get_scheme("encoder-decoder").key_summary(first)["attempts"] == 1
    # the first attempt is the key the same seed always gave
    same = make(min_decoding=0.0, attempts=1)
    decoder = sorted(k for k in first.tensors if k.startswith("decoder."))
    assert decoder and all(torch.equal(same.tensors[k], first.tensors[k]) for k in decoder)
