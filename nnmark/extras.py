"""Optional parts of nnmark and the extras that install them. The core (embed, verify locally,
keys and models on disk) needs only torch, numpy, scipy, safetensors, pydantic, typer and rich;
everything else is imported where it is used, through :func:`require`, so a missing package ends
in one line that says what to install."""
from __future__ import annotations

import importlib
from types import ModuleType

from nnmark.errors import MissingExtra

# extra -> (what it is for, the modules it provides)
EXTRAS: dict[str, tuple[str, tuple[str, ...]]] = {
    "data": ("the embedded digits dataset and image files", ("sklearn", "PIL")),
    "plots": ("plots and image grids", ("matplotlib", "PIL")),
    "onnx": ("ONNX export and ONNX suspects", ("onnx", "onnxruntime", "onnxscript")),
    "serve": ("serving models and verifying models behind an endpoint", ("mlserver", "httpx", "tenacity")),
    "encdec": ("the encoder/decoder scheme's image-quality metrics", ("torchmetrics",)),
    "bench": ("the adaptive bench: its tuner and its task engine", ("optuna", "ray")),
    "lightning": ("the PyTorch Lightning callback", ("lightning",)),
    "transformers": ("Hugging Face models and the Trainer integration", ("transformers",)),
    "datasets": ("Hugging Face datasets saved on disk (--data hf:PATH)", ("datasets",)),
}


def require(module: str, extra: str, purpose: str | None = None) -> ModuleType:
    """Import ``module``, or refuse in one line naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name is not None and exc.name.split(".")[0] != module.split(".")[0]:
            raise  # the module is there and one of its own imports failed: not a missing extra
        what = purpose or EXTRAS[extra][0]
        raise MissingExtra(f"{what} needs the '{extra}' extra ({module} is not installed): "
                           f"pip install 'nnmark[{extra}]'") from None
