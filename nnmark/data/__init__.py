"""Datasets as tensors, and tensor-side augmentation."""
from nnmark.data.augment import augment, random_crop, random_flip
from nnmark.data.base import (
    DATA_ENV,
    DATASET_PREFIXES,
    DATASETS,
    Augmentation,
    Dataset,
    dataset_names,
    load_dataset,
    register_dataset,
    register_dataset_prefix,
    resolve_data_dir,
)
from nnmark.registry import import_plugins
from nnmark.data.folder import load_image_folder

__all__ = [
    "DATA_ENV", "DATASETS", "DATASET_PREFIXES", "Augmentation", "Dataset", "augment", "dataset_names",
    "load_dataset", "load_image_folder", "random_crop", "random_flip", "register_dataset",
    "register_dataset_prefix", "resolve_data_dir",
]

import_plugins(__name__, __path__)  # each dataset module registers itself
