import pytest

from nnmark.errors import NNMarkError
from nnmark.registry import Registry


def test_registry_lists_and_rejects_unknown_names():
    registry: Registry[int] = Registry("widget")
    registry.register("b")(2)
    registry.register("a")(1)
    assert registry.names() == ["a", "b"]
    assert registry.get("a") == 1
    with pytest.raises(NNMarkError, match="unknown widget 'c' \\(known: a, b\\)"):
        registry.get("c")
    with pytest.raises(ValueError, match="twice"):
        registry.register("a")(3)
