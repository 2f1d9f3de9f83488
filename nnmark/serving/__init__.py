"""Serving our models over the Open Inference Protocol (v2 REST), so the black-box verification
path can be tried end to end on one machine."""
from nnmark.serving.oip import make_server, serve_model

__all__ = ["make_server", "serve_model"]
