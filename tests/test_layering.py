"""Which package may import which. Every package has a rank; a module may import its own package
and packages of lower rank only, directly or lazily inside a function. So there are no upward
imports (no scheme that calls the API, no model that needs the encoder/decoder package) and no
import cycles, between packages or between modules; the command line reaches nothing below the
API and the workflows."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nnmark"

# Bottom to top. Packages of one rank do not import each other.
RANKS = {
    "errors": 0, "version": 0, "registry": 1, "io": 1, "schema": 1, "extras": 1,
    "data": 2, "models": 2,
    "training": 3, "verification": 3,
    "encdec": 4,
    "schemes": 5,
    "attacks": 6, "serving": 6, "integrations": 6,
    "reporting": 7,
    "api": 8, "__init__": 8,
    "workflows": 9,
    "cli": 10, "__main__": 11,
}
# What the command line may reach: the flows it runs, the API, and nothing below them.
CLI_MAY_IMPORT = {"cli", "workflows", "api", "errors", "version"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imports(module: str) -> set[str]:
    """The nnmark modules ``module`` imports anywhere in its file."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name in MODULES and name != module}
    return found


GRAPH = {module: imports(module) for module in MODULES}


def test_every_package_has_a_rank():
    assert {package_of(module) for module in MODULES} <= set(RANKS), \
        sorted({package_of(module) for module in MODULES} - set(RANKS))


@pytest.mark.parametrize("package", sorted({package_of(module) for module in MODULES}))
def test_no_package_imports_upward_or_sideways(package):
    breaches = sorted(f"{module} imports {target}" for module, targets in GRAPH.items() if package_of(module) == package
                      for target in targets if package_of(target) != package
                      and RANKS[package_of(target)] >= RANKS[package])
    assert not breaches, breaches


def test_the_command_line_reaches_only_the_workflows_and_the_api():
    breaches = sorted(f"{module} imports {target}" for module, targets in GRAPH.items() if package_of(module) == "cli"
                      for target in targets if package_of(target) not in CLI_MAY_IMPORT)
    assert not breaches, breaches


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components of more than one module: each is an import cycle."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles_between_modules():
    assert strongly_connected(GRAPH) == []


def test_the_cycle_finder_finds_cycles():
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_cli_files_are_thin():
    long = {path.name: n for path in (PACKAGE / "cli").glob("*.py") if (n := len(path.read_text().splitlines())) > 250}
    assert not long, long


def test_start_up_imports_nothing_heavy():
    """`nnmark --help` and a verify of a local model start without the libraries they do not use:
    the commands import them where they are needed (figures in docs/benchmarks.md)."""
    import subprocess
    import sys

    probe = ("import sys, {module}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}} & {heavy!r})), "
             "'scipy.stats' in sys.modules)")
    heavy = {"torch", "scipy", "onnx", "onnxruntime", "matplotlib", "mlserver", "sklearn", "torchmetrics", "httpx",
             "tritonclient", "PIL", "lightning", "transformers", "optuna", "ray", "datasets"}
    cli = subprocess.run([sys.executable, "-c", probe.format(module="nnmark.cli", heavy=heavy)],
                         capture_output=True, text=True, check=True).stdout.split()
    assert cli == ["False"], cli  # nothing heavy at all
    verify = subprocess.run([sys.executable, "-c", probe.format(module="nnmark.workflows.verify", heavy=heavy)],
                            capture_output=True, text=True, check=True).stdout.split()
    assert verify == ["torch", "False"], verify
