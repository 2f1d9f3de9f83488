import pytest
import torch

from nnmark.data.base import Dataset
from nnmark.data.transfer import edge_images, transfer_images
from nnmark.errors import NNMarkError


def dataset_of(images):
    labels = torch.zeros(len(images), dtype=torch.long)
    return Dataset("source", images, labels, images[:1], labels[:1], 10, (0.5,), (0.25,))


def test_rgb_images_become_grey_at_the_victims_size():
    red, green = torch.zeros(2, 3, 32, 32), None
    red[0, 0] = 1.0  # pure red
    red[1] = 1.0  # white
    green = transfer_images(dataset_of(red), (1, 16, 16))
    assert green.shape == (2, 1, 16, 16)
    assert torch.allclose(green[0], torch.full((1, 16, 16), 0.299), atol=1e-5)  # BT.601 luma of red
    assert torch.allclose(green[1], torch.ones(1, 16, 16), atol=1e-5)


def test_grey_images_are_repeated_for_an_rgb_victim_and_kept_in_range():
    grey = torch.rand(3, 1, 28, 28)
    rgb = transfer_images(dataset_of(grey), (3, 32, 32))
    assert rgb.shape == (3, 3, 32, 32) and 0 <= rgb.min() and rgb.max() <= 1
    assert torch.equal(rgb[:, 0], rgb[:, 2])
    same = transfer_images(dataset_of(grey), (1, 28, 28))
    assert torch.equal(same, grey)  # nothing to convert: the images as they are


def test_other_channel_counts_are_refused_in_words():
    with pytest.raises(NNMarkError, match="2-channel images; the victim takes 3"):
        transfer_images(dataset_of(torch.rand(2, 2, 8, 8)), (3, 8, 8))


def test_edge_images_are_bright_strokes_on_a_dark_field():
    square = torch.zeros(1, 1, 16, 16)
    square[:, :, 4:12, 4:12] = 0.6  # a flat grey square: its only edges are its outline
    edges = edge_images(square)
    assert edges.shape == square.shape and 0 <= edges.min() and edges.max() == 1
    assert edges[0, 0, 8, 8] == 0 and edges[0, 0, 0, 0] == 0  # flat inside and outside
    assert edges[0, 0, 4, 8] > 0.5  # on the outline
