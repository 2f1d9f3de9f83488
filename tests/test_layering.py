"""Which package may import which: lower layers never reach up (no import cycles, no scheme that
calls the API, no model that needs the encoder/decoder package)."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nnmark"

# package -> packages it must never import (directly or lazily inside a function)
FORBIDDEN = {
    "models": {"encdec", "schemes", "attacks", "verification", "training", "workflows", "api", "cli"},
    "data": {"models", "schemes", "attacks", "verification", "training", "workflows", "api", "cli"},
    "training": {"schemes", "attacks", "verification", "workflows", "api", "cli"},
    "verification": {"schemes", "attacks", "workflows", "api", "cli"},
    "schemes": {"attacks", "workflows", "api", "cli"},
    "attacks": {"workflows", "api", "cli"},
    "encdec": {"workflows", "api", "cli"},
    "reporting": {"workflows", "api", "cli"},
    "api": {"workflows", "cli"},
    "workflows": {"cli"},
}


def imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else []
        for name in names:
            parts = name.split(".")
            if parts[0] == "nnmark" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_lower_layers_do_not_import_upper_ones(layer):
    files = [PACKAGE / f"{layer}.py"] if (PACKAGE / f"{layer}.py").exists() else sorted((PACKAGE / layer).rglob("*.py"))
    assert files
    breaches = {f"{f.relative_to(PACKAGE)} imports nnmark.{p}"
                for f in files for p in imported_packages(f) & FORBIDDEN[layer]}
    assert not breaches, sorted(breaches)


def test_start_up_imports_nothing_heavy():
    """`nnmark --help` and a verify of a local model start without the libraries they do not use:
    the commands import them where they are needed (figures in docs/benchmarks.md)."""
    import subprocess
    import sys

    probe = ("import sys, {module}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}} & {heavy!r})), "
             "'scipy.stats' in sys.modules)")
    heavy = {"torch", "scipy", "onnx", "onnxruntime", "matplotlib", "mlserver", "sklearn", "torchmetrics", "httpx",
             "tritonclient", "PIL"}
    cli = subprocess.run([sys.executable, "-c", probe.format(module="nnmark.cli", heavy=heavy)],
                         capture_output=True, text=True, check=True).stdout.split()
    assert cli == ["False"], cli  # nothing heavy at all
    verify = subprocess.run([sys.executable, "-c", probe.format(module="nnmark.workflows.verify", heavy=heavy)],
                            capture_output=True, text=True, check=True).stdout.split()
    assert verify == ["torch", "False"], verify
