import torch

from nnmark.data import Augmentation, augment, random_crop, random_flip


def test_random_crop_is_a_shifted_window():
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8) + 1
    out = random_crop(images, 2, torch.Generator().manual_seed(0))
    assert out.shape == images.shape
    for i in range(2):
        # every non-zero value kept its channel and appears in the source image
        kept = out[i][out[i] > 0]
        assert torch.isin(kept, images[i]).all()
        # a shift keeps rows contiguous: neighbours along a row differ by 1 where both are inside
        row = out[i, 0, 4]
        inside = row[row > 0]
        assert torch.all(inside[1:] - inside[:-1] == 1)


def test_crop_without_padding_is_identity():
    images = torch.rand(4, 1, 5, 5)
    assert torch.equal(random_crop(images, 0), images)


def test_flip_flips_about_half():
    images = torch.arange(1000 * 4, dtype=torch.float32).view(1000, 1, 1, 4)
    out = random_flip(images, torch.Generator().manual_seed(0))
    flipped = (out[:, 0, 0, 0] == images[:, 0, 0, 3])
    assert torch.equal(out[flipped], images[flipped].flip(3))
    assert torch.equal(out[~flipped], images[~flipped])
    assert 400 < int(flipped.sum()) < 600


def test_augment_is_reproducible_with_a_generator():
    images = torch.rand(16, 3, 8, 8)
    spec = Augmentation(crop_padding=2, horizontal_flip=True)
    a = augment(images, spec, torch.Generator().manual_seed(3))
    b = augment(images, spec, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert not torch.equal(a, images)
