"""Every hostile or broken file we know of, fed to every command that reads it: exit 2, one line
naming the problem, no traceback, nothing written and nothing the user had changed."""
from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from nnmark.api import generate_key
from nnmark.cli import app
from nnmark.models import ModelSpec, create_model, save_model
from tests.serving.servers import free_port
from nnmark.schemes import save_key

SPEC = ModelSpec("small-cnn", 10, (1, 16, 16), (0.5,), (0.25,))


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("inputs")
    save_model(create_model(SPEC, seed=0), SPEC, root / "model")
    save_key(generate_key("adi", num_classes=10, input_shape=(1, 16, 16), seed=3, options={"size": 20}), root / "key")
    save_key(generate_key("adi", num_classes=5, input_shape=(1, 16, 16), seed=3, options={"size": 20}), root / "key5")
    save_key(generate_key("dawn", num_classes=10, input_shape=(1, 16, 16), seed=3), root / "dawn")
    (root / "log").mkdir()
    return root


def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _edit_tensors(path: Path, change) -> None:
    tensors = load_file(str(path))
    change(tensors)
    save_file(tensors, str(path))


def _first_float(tensors: dict) -> str:
    return next(name for name, t in tensors.items() if t.is_floating_point() and t.numel() > 1)


def _poison(tensors: dict) -> None:
    """NaN into the first float tensor (a trigger); a key of bytes alone (DAWN's secret) gets one flipped."""
    floats = [name for name, t in tensors.items() if t.is_floating_point()]
    if floats:
        tensors[floats[0]].view(-1)[0] = float("nan")
    else:
        first = next(iter(tensors))
        tensors[first].view(-1)[0] ^= 1


MODEL_CASES = {
    "num_classes is a string": (lambda d: _edit_json(d / "model.json", lambda j: j["model"].update(num_classes="10")),
                                "model.num_classes"),
    "architecture missing": (lambda d: _edit_json(d / "model.json", lambda j: j["model"].pop("architecture")),
                             "model.architecture"),
    "negative width": (lambda d: _edit_json(d / "model.json", lambda j: j["model"].update(kwargs={"width": -4})),
                       "width"),
    "input shape of two numbers": (lambda d: _edit_json(d / "model.json",
                                                        lambda j: j["model"].update(input_shape=[16, 16])),
                                   "model.input_shape"),
    "model.json not JSON": (lambda d: (d / "model.json").write_text("{\"format\": "), "model.json"),
    "model.json a list": (lambda d: (d / "model.json").write_text("[]"), "model.json"),
    "weights not safetensors": (lambda d: (d / "model.safetensors").write_bytes(b"\x00" * 64), "model.safetensors"),
    "NaN weights": (lambda d: _edit_tensors(d / "model.safetensors",
                                            lambda t: t[_first_float(t)].view(-1).__setitem__(0, float("nan"))),
                    "NaN"),
    "infinite weights": (lambda d: _edit_tensors(d / "model.safetensors",
                                                 lambda t: t[_first_float(t)].view(-1).__setitem__(0, float("inf"))),
                         "infinite"),
    "an empty tensor": (lambda d: _edit_tensors(d / "model.safetensors",
                                                lambda t: t.__setitem__(_first_float(t), torch.zeros(0))),
                        "model.safetensors"),
}

KEY_CASES = {
    "num_classes is a string": (lambda d: _edit_json(d / "key.json", lambda j: j.update(num_classes="10")),
                                "num_classes"),
    "scheme missing": (lambda d: _edit_json(d / "key.json", lambda j: j.pop("scheme")), "scheme"),
    "negative input shape": (lambda d: _edit_json(d / "key.json", lambda j: j.update(input_shape=[1, -16, 16])),
                             "input_shape"),
    "params changed since keygen": (lambda d: _edit_json(d / "key.json", lambda j: j["params"].update(size=21)),
                                    "commitment"),
    "target a string": (lambda d: _edit_json(d / "key.json", lambda j: j["params"].update(target="3")),
                        "commitment"),
    "key.json not JSON": (lambda d: (d / "key.json").write_text("nope"), "key.json"),
    "NaN trigger": (lambda d: _edit_tensors(d / "key.safetensors", _poison),
                    "commitment"),  # any change to a committed key is caught first (a NaN key made so: tests/schemes)
    "tensors not safetensors": (lambda d: (d / "key.safetensors").write_bytes(b"garbage"), "key.safetensors"),
}

# every command that reads a model directory ({bad} is the broken copy, {out} must not appear)
MODEL_COMMANDS = {
    "verify": ["verify", "--model", "{bad}", "--key", "{key}"],
    "export": ["export", "onnx", "{bad}", "--out", "{out}"],
    "train --from": ["train", "--from", "{bad}", "--epochs", "1", "--quiet", "--out", "{out}"],
    "attack": ["attack", "--model", "{bad}", "--key", "{key}", "--attack", "prune:0.1", "--out", "{out}"],
    "serve": ["serve", "{bad}", "--port", "{port}"],
    "keygen --model": ["keygen", "adi", "--model", "{bad}", "--size", "10", "--out", "{out}"],
    "calibrate --control": ["calibrate", "--key", "{key}", "--models", "0", "--control", "{bad}", "--out", "{out}"],
    "dawn derive": ["dawn", "derive", "--key", "{dawn}", "--log", "{log}", "--model", "{bad}", "--out", "{out}"],
}

# every command that reads a key directory
KEY_COMMANDS = {
    "verify": ["verify", "--model", "{model}", "--key", "{bad}"],
    "train --watermark": ["train", "--watermark", "{bad}", "--epochs", "1", "--quiet", "--out", "{out}"],
    "attack": ["attack", "--model", "{model}", "--key", "{bad}", "--attack", "prune:0.1", "--out", "{out}"],
    "calibrate": ["calibrate", "--key", "{bad}", "--models", "0", "--control", "{model}", "--out", "{out}"],
    "serve --dawn": ["serve", "{model}", "--dawn", "{bad}", "--query-log", "{out}", "--port", "{port}"],
    "dawn derive": ["dawn", "derive", "--key", "{bad}", "--log", "{log}", "--model", "{model}", "--out", "{out}"],
}


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _run_refused(root: Path, args: list[str], bad: Path, message: str, names: Path | None = None) -> None:
    out = root / "out"
    shutil.rmtree(out, ignore_errors=True)
    filled = [a.format(bad=bad, out=out, key=root / "key", model=root / "model", dawn=root / "dawn",
                       log=root / "log", port=free_port()) for a in args]
    before = _snapshot(root)
    result = CliRunner().invoke(app, filled)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and not isinstance(result.exception, Exception if
                                                                   not isinstance(result.exception, SystemExit)
                                                                   else type(None))
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert message.lower() in lines[0].lower(), lines[0]
    assert str(names or bad) in lines[0] or (names or bad).name in lines[0], lines[0]  # it names the file
    assert not out.exists(), f"{out} was written"
    assert _snapshot(root) == before  # nothing the user had was changed


@pytest.mark.parametrize("command", list(MODEL_COMMANDS))
@pytest.mark.parametrize("case", list(MODEL_CASES))
def test_broken_models_are_refused_by_every_command(good, tmp_path, case, command):
    bad = tmp_path / "broken-model"
    shutil.copytree(good / "model", bad)
    corrupt, message = MODEL_CASES[case]
    corrupt(bad)
    _run_refused(good, MODEL_COMMANDS[command], bad, message)


@pytest.mark.parametrize("command", list(KEY_COMMANDS))
@pytest.mark.parametrize("case", list(KEY_CASES))
def test_broken_keys_are_refused_by_every_command(good, tmp_path, case, command):
    bad = tmp_path / "broken-key"
    shutil.copytree(good / ("dawn" if "dawn" in command else "key"), bad)
    corrupt, message = KEY_CASES[case]
    corrupt(bad)
    _run_refused(good, KEY_COMMANDS[command], bad, message)


@pytest.mark.parametrize("command", ["verify", "attack"])
def test_a_key_for_another_class_count_is_refused(good, command):
    args = {"verify": ["verify", "--model", "{model}", "--key", "{bad}"],
            "attack": ["attack", "--model", "{model}", "--key", "{bad}", "--attack", "prune:0.1", "--out", "{out}"]}
    _run_refused(good, args[command], good / "key5", "num_classes", names=good / "model")


@pytest.mark.parametrize("command", ["train", "attack"])
def test_a_corrupted_dataset_file_is_named_in_one_line(good, tmp_path, command):
    data = tmp_path / "data" / "mnist"
    data.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (data / f"{name}.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x03" + b"\x00" * 40)[:30])  # cut short
    args = {"train": ["train", "--data", "mnist", "--data-dir", str(tmp_path / "data"), "--epochs", "1", "--quiet",
                      "--out", "{out}"],
            "attack": ["attack", "--model", "{model}", "--key", "{key}", "--attack", "prune:0.1", "--data", "mnist",
                       "--data-dir", str(tmp_path / "data"), "--out", "{out}"]}
    _run_refused(good, args[command], data / "train-images-idx3-ubyte.gz", "train-images-idx3-ubyte.gz")
