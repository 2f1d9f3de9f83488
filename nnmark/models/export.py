"""Export our models to ONNX (with a dynamic batch axis), for serving elsewhere and for testing
verification against a model we no longer hold in-process."""
from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import warnings
from pathlib import Path

import torch

from nnmark.extras import require
from nnmark.errors import NNMarkError
from nnmark.models.store import Classifier, ModelSpec


def export_onnx(model: Classifier, spec: ModelSpec, path: str | Path, *, force: bool = False) -> Path:
    """Write ``model`` as an ONNX file taking images in [0, 1] (input ``input``, output
    ``logits``). The graph keeps parameter names and un-fused batch norms, so white-box schemes
    can still read the layers."""
    path = Path(path)
    if path.exists() and not force:
        raise NNMarkError("already exists; refusing to overwrite it (pass --force to replace it)", path=path)
    for module in ("onnx", "onnxscript"):  # torch.onnx's exporter needs both
        require(module, "onnx", "ONNX export")
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.to("cpu").eval()
    example = torch.rand(2, *spec.input_shape)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".onnx", dir=path.parent)
    os.close(fd)
    try:
        exporter_log = logging.getLogger("torch.onnx")
        level = exporter_log.level
        exporter_log.setLevel(logging.ERROR)  # it logs every optional torchvision op it skips
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (example,), tmp, input_names=["input"], output_names=["logits"],
                              dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True,
                              external_data=False, verbose=False)
        _strip_provenance(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        exporter_log.setLevel(level)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return path


def _strip_provenance(path: str) -> None:
    """The exporter writes each node's Python stack trace, FX node and module path into the file;
    whoever receives the model would read the owner's file-system paths and source layout there."""
    onnx = require("onnx", "onnx")

    model = onnx.load(path, load_external_data=False)
    graphs = [model.graph, *(function for function in model.functions)]
    while graphs:
        graph = graphs.pop()
        for node in graph.node:
            del node.metadata_props[:]
            node.doc_string = ""
            graphs.extend(attribute.g for attribute in node.attribute if attribute.HasField("g"))
            graphs.extend(sub for attribute in node.attribute for sub in attribute.graphs)
        if hasattr(graph, "doc_string"):
            graph.doc_string = ""
        if hasattr(graph, "metadata_props"):
            del graph.metadata_props[:]
    model.doc_string = ""
    onnx.save(model, path)
