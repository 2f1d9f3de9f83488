from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from nnmark.api import generate_key, train_model
from nnmark.data import load_dataset
from nnmark.training import TrainConfig

# Tests run on CI's two cores; more threads than cores only adds contention. NNMARK_TEST_THREADS
# sets it where two test runs share the cores.
torch.set_num_threads(int(os.environ.get("NNMARK_TEST_THREADS", 0)) or min(2, os.cpu_count() or 1))

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# Test files whose assertions rest on what training (or floating-point arithmetic) produced: CI
# runs them a second time with the kernels of a CPU without AVX-512 (.ci/run), since PyTorch picks
# its kernels by instruction set and a claim that holds on one CPU's rounding alone is not a claim.
# The set is those whose outcome failed or came near its bound under AVX2 kernels, and those that
# state a rate; the whole suite (before the bench tuner's tests were added) passed under AVX2 and under `default`
# kernels by hand on 2026-12-04,
# and running it twice on every landing would not fit CI's time.
TRAINS = {
    "attacks/test_attacks.py", "schemes/test_dark_knowledge.py", "schemes/test_dawn.py",
    "schemes/test_embedding_end_to_end.py", "serving/test_stacked_api.py", "test_end_to_end.py",
    "training/test_trainer.py",
}


def pytest_collection_modifyitems(config, items):
    root = Path(__file__).resolve().parent
    for item in items:
        if item.path.resolve().relative_to(root).as_posix() in TRAINS:
            item.add_marker(pytest.mark.trains)


def shared_data_dir() -> Path | None:
    """The datasets beside the project (or NNMARK_DATA), or None when neither exists."""
    env = os.environ.get("NNMARK_DATA")
    for candidate in ([Path(env)] if env else []) + [SHARED_DATA]:
        if candidate.is_dir():
            return candidate
    return None


@pytest.fixture(scope="session")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    found = shared_data_dir()
    if found is None:
        pytest.skip("no dataset directory: set NNMARK_DATA or place shared/data beside the project")
    return found


@pytest.fixture(scope="session")
def digits_host(digits):
    """The trained digits model every test file shares (small-cnn, the "small-data" preset, seed 0):
    the host to mark, the clean model to compare with. Tests must not change it (train_model
    fine-tunes a copy of a base it is given)."""
    from nnmark.api import train_model
    from nnmark.training.presets import preset

    return train_model(digits, preset("small-data", seed=0), architecture="small-cnn")


@pytest.fixture(scope="session")
def nnmark_controls(digits):
    """20 models nnmark trains without any key (several architectures), to measure nulls on."""
    from nnmark.workflows.controls import train_controls

    return train_controls(digits, 20, epochs=4, seed=700)


@pytest.fixture(scope="session")
def screening_models(digits):
    """6 more keyless models, apart from the controls: a target chosen on the models that then
    measure its null would make that null look narrower than it is."""
    from nnmark.workflows.controls import train_controls

    return [c.model for c in train_controls(digits, 6, epochs=3, seed=800)]


@pytest.fixture(scope="session")
def independent_models(digits):
    """Models nnmark did not make: 24 networks of other architectures, widths, optimisers and seeds,
    trained on digits by a plain PyTorch loop written here (never nnmark's trainer), as an
    auditor would. Each takes images in [0, 1]."""
    from tests.independent import train_independent_models

    return train_independent_models(digits, 24)


# A small ADI-marked model, its key and an unmarked control, shared by the verification and serving tests
QUICK = TrainConfig(epochs=8, batch_size=64, lr=0.05)


@pytest.fixture(scope="session")
def adi_key(digits):
    return generate_key("adi", num_classes=10, input_shape=digits.input_shape, seed=21, options={"size": 40})


@pytest.fixture(scope="session")
def marked(digits, adi_key):
    return train_model(digits, QUICK, key=adi_key, embed_options={"per_batch": 16})


@pytest.fixture(scope="session")
def control(digits):
    return train_model(digits, QUICK)


@pytest.fixture(scope="session")
def model_server(tmp_path_factory, marked, control):
    """One `nnmark serve` (MLServer) on loopback for the session, serving: `mark` (the ADI-marked
    model directory), `owner` and `other` (the marked and control models as someone else's ONNX
    export: input 'pixels', labels first, batch fixed at 1) and `nan` (an ONNX graph answering NaN).
    Yields the port; at the end, nothing any test sent may have crashed a handler or been echoed."""
    from nnmark.models import save_model
    from tests.serving.servers import foreign_onnx, nan_onnx, start_cli_server, stop

    root = tmp_path_factory.mktemp("served")
    save_model(marked.model, marked.spec, root / "mark")
    foreign_onnx(marked.model, marked.spec.input_shape, root / "owner.onnx")
    foreign_onnx(control.model, control.spec.input_shape, root / "other.onnx")
    nan_onnx(root / "nan.onnx", marked.spec.input_shape)
    process, port = start_cli_server(*(str(root / name) for name in ("mark", "owner.onnx", "other.onnx", "nan.onnx")),
                                     "--body-timeout", "1", models=("mark", "owner", "other", "nan"))
    yield port
    output = stop(process)
    assert "Traceback" not in output, output
    assert "SECRET-TRIGGER" not in output  # request bodies are never echoed into the log
