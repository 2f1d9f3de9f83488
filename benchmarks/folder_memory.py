"""Memory and speed of training on an image folder that is streamed (``--data folder:DIR``): one
epoch on a folder of 5,000 PNGs and one of 50,000, written by this script from CIFAR-10's training
images at 64x64. Each run is a process of its own, so its peak resident memory is its own: the main process's
high-water mark (VmHWM) and, separately, the largest DataLoader worker's (which counts the pages
it shares with the main process it was forked from).

Beside nnmark's streamed trainer (``nnmark.training.fit`` on ``load_dataset("folder:DIR",
image_size=64)``), the plain way: a ``DataLoader`` over a Dataset that opens each file with PIL,
and the same model trained in a plain loop. Targets: peak memory 50k / 5k ≤ 1.2 (flat in the
number of images), and nnmark's images/s at least the plain loop's.

    python3 benchmarks/folder_memory.py --data-dir ../shared/data [--sizes 5000,50000] [--folders /tmp/folders]

Without CIFAR-10 (no --data-dir) it draws random images instead (their files are larger).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

SIZE = 64


def write_folder(root: Path, count: int, data_dir: str | None) -> Path:
    """``count`` PNGs in class folders at SIZE x SIZE (kept for a re-run)."""
    from PIL import Image

    done = root / f"{count}.done"
    folder = root / str(count)
    if done.exists():
        return folder
    try:
        from nnmark.data import load_dataset

        cifar = load_dataset("cifar10", data_dir)
        images = (cifar.train_x[:count] * 255).round().byte().permute(0, 2, 3, 1).numpy()
        labels = cifar.train_y[:count].tolist()
    except Exception:  # no CIFAR-10 here: random images stand in
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, count).tolist()
    for index, (array, label) in enumerate(zip(images, labels)):
        target = folder / str(label)
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).resize((SIZE, SIZE), Image.BILINEAR).save(target / f"{index}.png")
    done.write_text("written\n")
    return folder


class PlainFolder(Dataset):
    """The way most code reads a folder: PIL per file, to a tensor."""

    def __init__(self, root: Path) -> None:
        classes = sorted(p.name for p in root.iterdir() if p.is_dir())
        self.files = [(path, index) for index, name in enumerate(classes) for path in sorted((root / name).iterdir())]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        from PIL import Image

        path, label = self.files[index]
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB").resize((SIZE, SIZE)), dtype=np.uint8)
        return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255), label


def child(folder: str, mode: str, batch: int, workers: int) -> dict:
    from nnmark.models import ModelSpec, create_model

    spec = ModelSpec("small-cnn", 10, (3, SIZE, SIZE), (0.5,) * 3, (0.25,) * 3)
    model = create_model(spec, seed=0)
    started = time.perf_counter()
    if mode == "nnmark":
        from nnmark.data import load_dataset
        from nnmark.training import TrainConfig, fit

        data = load_dataset(f"folder:{folder}", image_size=SIZE)
        config = TrainConfig(epochs=1, batch_size=batch, lr=0.05, loader_workers=workers, augment=False)
        result = fit(model, data.split("train"), None, config)
        images, seconds = result.samples, result.seconds
    else:
        loader = DataLoader(PlainFolder(Path(folder)), batch_size=batch, shuffle=True, num_workers=workers)
        optimiser = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        model.train()
        images, began = 0, time.perf_counter()
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            images += len(y)
        seconds = time.perf_counter() - began
    return {"images_per_s": images / seconds, "wall_s": time.perf_counter() - started,
            "peak_rss_mb": high_water_mb(),
            "peak_worker_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def high_water_mb() -> float:
    """This process's peak resident memory since it started (VmHWM). Not ``ru_maxrss``, which on
    Linux keeps the peak of the process that forked it from before its exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--sizes", default="5000,50000")
    parser.add_argument("--folders", default="/tmp/nnmark-folders", help="Where the PNG folders are written (kept).")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--child", nargs=2, metavar=("FOLDER", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], args.batch, args.workers)))
        return
    root = Path(args.folders)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for count in (int(v) for v in args.sizes.split(",")):
        folder = write_folder(root, count, args.data_dir)
        for mode in ("nnmark", "plain"):
            done = subprocess.run([sys.executable, __file__, "--child", str(folder), mode, "--batch", str(args.batch),
                                   "--workers", str(args.workers)], capture_output=True, text=True, check=True)
            rows.append({"images": count, "mode": mode, **json.loads(done.stdout.strip().splitlines()[-1])})
            print(rows[-1], flush=True)
    print(f"\n{torch.get_num_threads()} threads, {args.workers} DataLoader workers, batch {args.batch}, {SIZE}x{SIZE} PNGs")
    print("| images | loop | images/s | peak RSS, main (MB) | peak RSS, a worker (MB) |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['images']:,} | {row['mode']} | {row['images_per_s']:.0f} | {row['peak_rss_mb']:.0f} | "
              f"{row['peak_worker_rss_mb']:.0f} |")
    sizes = sorted({row["images"] for row in rows})
    if len(sizes) > 1:
        small, large = ({row["mode"]: row for row in rows if row["images"] == size} for size in (sizes[0], sizes[-1]))
        print(f"\nnnmark peak RSS {sizes[-1]:,} / {sizes[0]:,}: {large['nnmark']['peak_rss_mb'] / small['nnmark']['peak_rss_mb']:.2f}; "
              f"nnmark / plain images/s at {sizes[-1]:,}: {large['nnmark']['images_per_s'] / large['plain']['images_per_s']:.2f}")


if __name__ == "__main__":
    main()
