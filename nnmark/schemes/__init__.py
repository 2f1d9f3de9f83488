"""Watermark schemes behind one interface, registered by name."""
from nnmark.registry import import_plugins
from nnmark.schemes.base import (
    SCHEMES,
    KeygenContext,
    WatermarkScheme,
    get_scheme,
    register_scheme,
)
from nnmark.schemes.key import WatermarkKey, load_key, save_key

__all__ = ["SCHEMES", "KeygenContext", "WatermarkKey", "WatermarkScheme", "get_scheme", "load_key",
           "register_scheme", "save_key"]

import_plugins(__name__, __path__)  # each scheme module registers itself
