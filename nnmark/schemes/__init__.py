"""Watermark schemes behind one interface, registered by name."""
from nnmark.schemes import adi, content, noise, trojan, uchida, unrelated  # noqa: F401 - register
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
