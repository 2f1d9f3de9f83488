"""What the reproduce_*.py scripts share: arguments, data loading that reports a missing dataset
instead of failing, a trainer that times itself, and the table they print and save.

Every script defaults to the paper's own setting; the flags scale it down (a smaller model, fewer
epochs, part of the training set) for a CPU, and each printed row names the setting it ran.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nnmark.api import TrainedModel, generate_key, train_model
from nnmark.data import load_dataset
from nnmark.data.base import Dataset
from nnmark.errors import NNMarkError
from nnmark.models.store import LoadedModel
from nnmark.training import TrainConfig


def arguments(description: str, *, model: str, epochs: int, batch_size: int, lr: float,
              datasets: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("NNMARK_DATA"),
                        help="Folder with mnist/ and cifar10/ in their official formats (or NNMARK_DATA).")
    parser.add_argument("--datasets", nargs="+", default=datasets)
    parser.add_argument("--model", default=model, help=f"Architecture (the paper's: {model}).")
    parser.add_argument("--model-arg", action="append", default=[], metavar="NAME=INT",
                        help="Architecture argument, e.g. widen=1 (repeatable).")
    parser.add_argument("--epochs", type=int, default=epochs, help=f"Training epochs (the paper's: {epochs}).")
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--train-fraction", type=float, default=1.0,
                        help="Use this fraction of the training set (1: all of it, as the paper).")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: PyTorch's choice).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="Also write the rows to this JSON file.")
    return parser


def parse(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse the command line and apply --threads."""
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def model_kwargs(items: list[str]) -> dict[str, int]:
    kwargs = {}
    for item in items:
        name, _, value = item.partition("=")
        kwargs[name.strip()] = int(value)
    return kwargs


def load(name: str, args) -> tuple[Dataset | None, str]:
    """The dataset, or None and why it is not there (its files missing, say)."""
    try:
        data = load_dataset(name, args.data_dir)
    except NNMarkError as why:
        print(f"[{name}] not run: {why}")
        return None, "not run: its files are not under --data-dir"
    return (data.subset(args.train_fraction, seed=args.seed) if args.train_fraction < 1 else data), ""


def adi_key(data: Dataset, args):
    """Adi et al.'s key: 100 abstract trigger images. Seeded from ``--seed`` alone, so the
    reproduction and the fast-recipe runs embed the same trigger set."""
    return generate_key("adi", num_classes=data.num_classes, input_shape=data.input_shape,
                        seed=args.seed + 1000, options={"size": 100})


@dataclass
class Table:
    """Rows of ours-beside-the-paper's, printed as markdown and saved as JSON."""

    title: str
    setting: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)

    def add(self, **row: Any) -> None:
        self.rows.append(row)
        print("  " + " | ".join(f"{k}={_fmt(v)}" for k, v in row.items()), flush=True)

    def markdown(self) -> str:
        columns = list(dict.fromkeys(k for row in self.rows for k in row))
        lines = [f"### {self.title}", "", "Setting: " + ", ".join(f"{k} {v}" for k, v in self.setting.items()), "",
                 "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(_fmt(row.get(c, "")) for c in columns) + " |" for row in self.rows]
        return "\n".join(lines) + "\n"

    def save(self, path: Path | None) -> None:
        print()
        print(self.markdown())
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"title": self.title, "setting": self.setting, "rows": self.rows,
                                       "machine": self.setting.get("machine") or machine()}, indent=2, default=str))
            tmp.replace(path)


def _fmt(value: Any) -> str:
    if isinstance(value, float):  # shares and p-values keep 3 significant digits (1 bit in 256 shows)
        return f"{value:.3g}" if abs(value) < 1 and value != 0 else f"{value:.2f}"
    return str(value)


def machine(device: str | torch.device = "auto") -> str:
    """The accelerator a run used, or the CPU and its thread count."""
    if str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def setting(args, **extra: Any) -> dict[str, Any]:
    kwargs = model_kwargs(args.model_arg)
    model = args.model + (f"({', '.join(f'{k}={v}' for k, v in kwargs.items())})" if kwargs else "")
    return {"model": model, "epochs": args.epochs, "batch": args.batch_size, "lr": args.lr,
            "train fraction": args.train_fraction, "machine": machine(args.device), **extra}


def train(data: Dataset, args, *, key=None, base: TrainedModel | None = None, epochs: int | None = None,
          embed_options: dict | None = None, **config: Any) -> TrainedModel:
    """Train from scratch, or fine-tune a copy of ``base`` (never ``base`` itself)."""
    values = {"epochs": epochs or args.epochs, "batch_size": args.batch_size, "lr": args.lr,
              "seed": args.seed, "device": args.device, **config}
    started = time.perf_counter()
    if base is None:
        trained = train_model(data, TrainConfig(**values), architecture=args.model,
                              model_kwargs=model_kwargs(args.model_arg), key=key, embed_options=embed_options)
    else:
        loaded = LoadedModel(copy.deepcopy(base.model), base.spec, {}, Path("<in memory>"))
        trained = train_model(data, TrainConfig(**values), key=key, mode="pretrained", base=loaded,
                              embed_options=embed_options)
    print(f"    trained in {time.perf_counter() - started:.0f} s: test accuracy {100 * trained.test_accuracy:.2f}%",
          flush=True)
    return trained
