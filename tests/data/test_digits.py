import torch

from nnmark.data import load_dataset


def test_digits_is_upsampled_split_and_normalised(digits):
    assert digits.input_shape == (1, 16, 16)
    assert len(digits.train_y) + len(digits.test_y) == 1797
    assert len(digits.test_y) == 360
    assert digits.train_x.min() >= 0 and digits.train_x.max() <= 1
    assert digits.num_classes == 10
    # stratified: every class is in the test split in proportion
    counts = torch.bincount(digits.test_y, minlength=10)
    assert counts.min() >= 34 and counts.max() <= 38


def test_digits_split_is_fixed():
    again = load_dataset("digits")
    first = load_dataset("digits")
    assert torch.equal(first.test_y, again.test_y)
    assert torch.equal(first.train_x, again.train_x)


def test_subset_keeps_test_split(digits):
    part = digits.subset(0.25, seed=1)
    assert len(part.train_y) == round(0.25 * len(digits.train_y))
    assert torch.equal(part.test_y, digits.test_y)
