"""Datasets as tensors, and tensor-side augmentation."""
from nnmark.data import cifar, digits, idx  # noqa: F401 - modules register their datasets
from nnmark.data.augment import augment, random_crop, random_flip
from nnmark.data.base import (
    DATA_ENV,
    DATASETS,
    Augmentation,
    Dataset,
    load_dataset,
    register_dataset,
    resolve_data_dir,
)
from nnmark.data.folder import load_image_folder

__all__ = [
    "DATA_ENV", "DATASETS", "Augmentation", "Dataset", "augment", "load_dataset",
    "load_image_folder", "random_crop", "random_flip", "register_dataset", "resolve_data_dir",
]
