"""Trigger images a user brings, for an adi key: a team's own pictures, or the authors' published
trigger set (Adi et al.'s WatermarkNN repository: ``data/trigger_set/pics/1.jpg`` ... ``100.jpg``
and ``labels-cifar.txt``, one label per line written as a float).

The images are read in a stated order and paired with the labels exactly as the authors' loader
pairs them: their ``ImageFolderCustomClass`` walks the class folders in sorted order and, inside
each, the file names sorted *as strings* (``1.jpg``, ``10.jpg``, ``100.jpg``, ``11.jpg``, ...), and
``getwmloader`` gives the i-th of those files the i-th line of the labels file. A folder with the
images directly in it is read the same way (names sorted as strings). A labels file may instead
name each file (``name label`` or ``name,label`` per line), which pairs nothing by position.

How an image is brought to the key's input shape is stated too: ``resize`` (bilinear, the default
for one's own pictures) or ``center-crop`` (the centre H x W, padded with black where the image is
smaller: the authors' ``CenterCrop(32)``, so a model trained by their code sees what the key holds).
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import numpy as np
import torch

from nnmark.errors import NNMarkError
from nnmark.extras import require

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".gif", ".webp", ".tif", ".tiff")
FITS = ("resize", "center-crop")
AUTHORS_PAIRING = ("position: files in class folders sorted, names inside each sorted as strings, the i-th file "
                   "with the i-th label line (WatermarkNN's ImageFolderCustomClass and getwmloader)")
FLAT_PAIRING = "position: files sorted by name as strings, the i-th file with the i-th label line"
NAMED_PAIRING = "by name: each line of the labels file names its image"


def image_files(directory: Path) -> tuple[list[Path], str]:
    """The images under ``directory`` in the order the authors' loader reads them, and which
    layout that was ("class folders" or "flat")."""
    if not directory.is_dir():
        raise NNMarkError("trigger image folder does not exist", path=directory)
    folders = sorted(name for name in os.listdir(directory) if (directory / name).is_dir())
    files: list[Path] = []
    for folder in folders:
        for root, _, names in sorted(os.walk(directory / folder)):
            files += [Path(root) / name for name in sorted(names) if name.lower().endswith(IMAGE_SUFFIXES)]
    if files:
        return files, "class folders"
    files = [directory / name for name in sorted(os.listdir(directory))
             if name.lower().endswith(IMAGE_SUFFIXES) and (directory / name).is_file()]
    if not files:
        raise NNMarkError("holds no images", path=directory,
                          expected=f"image files ({', '.join(IMAGE_SUFFIXES)}) in it or in folders inside it")
    return files, "flat"


def read_images(files: list[Path], input_shape: tuple[int, int, int], fit: str) -> torch.Tensor:
    """Each file decoded (as RGB or grey, for the key's channels) and fitted to the key's H x W."""
    if fit not in FITS:
        raise NNMarkError(f"unknown way to fit images '{fit}'", field="fit", expected=" or ".join(FITS))
    Image = require("PIL.Image", "data", "reading trigger images")
    channels, height, width = input_shape
    if channels not in (1, 3):
        raise NNMarkError("trigger images are grey (1 channel) or colour (3)", field="input_shape",
                          got=list(input_shape))
    arrays = []
    for path in files:
        try:
            with Image.open(path) as opened:
                image = opened.convert("L" if channels == 1 else "RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise NNMarkError(f"cannot read image ({str(exc).splitlines()[0][:120]})", path=path) from None
        if fit == "resize":
            image = image.resize((width, height), Image.BILINEAR)
        else:
            left, top = (image.width - width) // 2, (image.height - height) // 2
            canvas = Image.new(image.mode, (width, height))
            canvas.paste(image.crop((max(0, left), max(0, top), max(0, left) + min(width, image.width),
                                     max(0, top) + min(height, image.height))), (max(0, -left), max(0, -top)))
            image = canvas
        array = np.asarray(image, dtype=np.uint8)
        arrays.append(array[:, :, None] if array.ndim == 2 else array)
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
    seen: dict[bytes, Path] = {}
    for path, image in zip(files, images):
        digest = hashlib.sha256(image.numpy().tobytes()).digest()
        if digest in seen:
            raise NNMarkError(f"is the same image as {seen[digest].name} once fitted to "
                              f"{height}x{width}: items must be distinct", path=path)
        seen[digest] = path
    return images


def read_labels(path: Path, files: list[Path], num_classes: int) -> tuple[torch.Tensor, str]:
    """The label of each file from ``path``, and how they were paired."""
    try:
        lines = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise NNMarkError(f"cannot read the labels file ({exc})", path=path) from None
    named = any(re.search(r"[\s,]", line) for line in lines)
    if named:
        by_name: dict[str, str] = {}
        for number, line in enumerate(lines, 1):
            parts = re.split(r"\s*,\s*|\s+", line, maxsplit=1)
            if len(parts) != 2 or parts[0] in by_name:
                raise NNMarkError(f"line {number} is not 'name label' for an image named once", path=path,
                                  got=line)
            by_name[parts[0]] = parts[1]
        missing = [file.name for file in files if file.name not in by_name]
        if missing or len(by_name) != len(files):
            raise NNMarkError(f"names {len(by_name)} images and the folder holds {len(files)}"
                              + (f"; no label for {', '.join(missing[:5])}" if missing else ""), path=path,
                              expected="one 'name label' line per image")
        values = [(by_name[file.name], f"the line for {file.name}") for file in files]
        pairing = NAMED_PAIRING
    else:
        if len(lines) != len(files):
            raise NNMarkError(f"holds {len(lines)} labels for {len(files)} images", path=path,
                              expected=f"{len(files)} lines, one label each")
        values = [(line, f"line {number}") for number, line in enumerate(lines, 1)]
        pairing = None
    labels = []
    for value, where in values:
        try:
            number = float(value)
        except ValueError:
            raise NNMarkError(f"{where} holds '{value}', not a number", path=path) from None
        if not number.is_integer():
            raise NNMarkError(f"{where} holds {value}, not a whole number", path=path,
                              expected="class indices such as 6 or 6.000000000000000000e+00")
        if not 0 <= number < num_classes:
            raise NNMarkError(f"{where} holds class {int(number)}, outside the key's classes", path=path,
                              expected=f"0..{num_classes - 1}")
        labels.append(int(number))
    return torch.tensor(labels, dtype=torch.int64), pairing or ""
