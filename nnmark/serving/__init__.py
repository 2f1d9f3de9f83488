"""Serving our models (and ONNX files) over the Open Inference Protocol (v2 REST) on MLServer:
``nnmark serve`` and :mod:`nnmark.serving.runtime`."""
from nnmark.serving.runtime import load_served, run_server, server_settings

__all__ = ["load_served", "run_server", "server_settings"]
