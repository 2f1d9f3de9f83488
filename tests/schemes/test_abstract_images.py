import torch

from nnmark.schemes.abstract_images import abstract_images


def test_reproducible_in_range_and_shaped():
    a = abstract_images(8, (3, 32, 32), seed=4)
    assert a.shape == (8, 3, 32, 32) and a.dtype == torch.float32
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, abstract_images(8, (3, 32, 32), seed=4))
    assert not torch.equal(a, abstract_images(8, (3, 32, 32), seed=5))


def neighbour_correlation(images: torch.Tensor) -> float:
    left, right = images[..., :, :-1].flatten(), images[..., :, 1:].flatten()
    return torch.corrcoef(torch.stack([left, right]))[0, 1].item()


def test_structured_not_noise_and_diverse():
    images = abstract_images(50, (1, 16, 16), seed=0)
    # Shapes and colour fields make neighbouring pixels strongly correlated; noise would not.
    assert neighbour_correlation(images) > 0.6
    assert abs(neighbour_correlation(torch.rand(50, 1, 16, 16))) < 0.1
    # ... yet the images differ from each other: no two are near-duplicates.
    flat = images.flatten(1)
    distances = torch.cdist(flat, flat) + torch.eye(50) * 1e9
    assert distances.min() > 1.0
    # and they use the whole intensity range, not a narrow band
    assert images.std() > 0.15
