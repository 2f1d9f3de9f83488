"""`pip install nnmark` with no extras: the core (torch, numpy, scipy, safetensors, pydantic, typer,
rich) embeds a mark and verifies it, and every command that needs an extra says which, in one line,
with exit status 2. The optional packages are installed here, so the test hides them from a fresh
interpreter: any import of one fails as if it were not installed."""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

OPTIONAL = ("sklearn", "PIL", "matplotlib", "onnx", "onnxruntime", "onnxscript", "mlserver", "httpx", "tenacity",
            "torchmetrics", "lightning", "pytorch_lightning", "transformers", "datasets", "optuna", "ray",
            "tritonclient")

BLOCKER = textwrap.dedent(f"""
    import importlib.machinery, sys
    BLOCKED = {OPTIONAL!r}

    class Hiding:
        \"\"\"The path finder, blind to the optional packages: they are found nowhere, as when not installed.\"\"\"
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                return None
            return importlib.machinery.PathFinder.find_spec(name, path, target)

        def invalidate_caches(self):
            importlib.machinery.PathFinder.invalidate_caches()

    sys.meta_path[:] = [Hiding() if finder is importlib.machinery.PathFinder else finder for finder in sys.meta_path]
""")


def run_core(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKER + textwrap.dedent(code)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


@pytest.mark.slow
def test_the_core_embeds_and_verifies_with_no_extra_installed(tmp_path):
    done = run_core("""
        import torch
        from nnmark.api import generate_key, train_model, verify_model
        from nnmark.data.base import Dataset
        from nnmark.models import save_model, load_model
        from nnmark.schemes import save_key, load_key
        from nnmark.training import TrainConfig

        # ten classes of 8x8 images, each a fixed pattern under noise: no dataset package needed
        g = torch.Generator().manual_seed(0)
        prototypes = torch.rand(10, 1, 8, 8, generator=g)
        def split(n):
            y = torch.randint(0, 10, (n,), generator=g)
            return (prototypes[y] + 0.15 * torch.randn(n, 1, 8, 8, generator=g)).clamp(0, 1), y
        (train_x, train_y), (test_x, test_y) = split(600), split(200)
        data = Dataset("patterns", train_x, train_y, test_x, test_y, 10, (0.5,), (0.25,))
        key = generate_key("adi", num_classes=10, input_shape=(1, 8, 8), options={"size": 24})
        marked = train_model(data, TrainConfig(epochs=12, batch_size=32, lr=0.05), key=key,
                             embed_options={"per_batch": 8})
        save_key(key, "key"); save_model(marked.model, marked.spec, "model")
        verdict = verify_model(load_model("model").model, load_key("key"))
        print(verdict.owned, verdict.matches, verdict.total, marked.test_accuracy)
        missing = sorted({m.split(".")[0] for m in sys.modules} & set(BLOCKED))
        print("optional modules imported:", missing)
    """, tmp_path)
    assert done.returncode == 0, done.stderr
    owned, matches, total, accuracy = done.stdout.splitlines()[0].split()
    assert owned == "True" and int(matches) >= 20 and float(accuracy) > 0.9, done.stdout
    assert done.stdout.splitlines()[1] == "optional modules imported: []"


@pytest.mark.parametrize("command, extra", [
    (["demo", "--out", "demo"], "data"),
    (["train", "--data", "digits", "--epochs", "1", "--out", "m"], "data"),
    (["verify", "--key", "KEY", "--endpoint", "http://127.0.0.1:9", "--model-name", "m"], "serve"),
    (["export", "onnx", "MODEL", "--out", "m.onnx"], "onnx"),
    (["serve", "MODEL", "--port", "0"], "serve"),
])
def test_a_command_missing_its_extra_names_it(tmp_path, command, extra):
    import torch

    from nnmark.api import generate_key
    from nnmark.models import ModelSpec, create_model, save_model
    from nnmark.schemes import save_key

    save_key(generate_key("adi", num_classes=10, input_shape=(1, 8, 8), seed=1, options={"size": 4}), tmp_path / "KEY")
    save_model(create_model(ModelSpec("small-cnn", 10, (1, 8, 8), (0.5,), (0.25,)), seed=0),
               ModelSpec("small-cnn", 10, (1, 8, 8), (0.5,), (0.25,)), tmp_path / "MODEL")
    assert torch  # the parent has every extra; the child below has none
    done = run_core(f"""
        sys.argv = ["nnmark", *{[str(tmp_path / a) if a in ("KEY", "MODEL") else a for a in command]!r}]
        from nnmark.cli import main
        main()
    """, tmp_path)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines and "Traceback" not in done.stderr and f"pip install 'nnmark[{extra}]'" in " ".join(lines), done.stderr
