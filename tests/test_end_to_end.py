"""Real runs on the embedded digits: a watermark embedded by training, verified, and a control."""
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from nnmark.api import generate_key, train_model, verify_model
from nnmark.cli import app
from nnmark.models.store import LoadedModel
from nnmark.training import TrainConfig

pytestmark = pytest.mark.slow


def test_demo_owned_vs_control(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    marked, clean = summary["watermarked"], summary["clean"]
    for entry in (marked, clean):
        assert set(entry["verify"]) >= {"owned", "p_value", "matches", "total"}
    assert marked["verify"]["owned"] and marked["verify"]["p_value"] < 1e-6
    assert not clean["verify"]["owned"]
    assert abs(marked["test_accuracy"] - clean["test_accuracy"]) <= 0.02
    assert marked["test_accuracy"] > 0.95
    assert sorted(p.name for p in out.iterdir()) == ["clean", "key", "summary.json", "watermarked"]
    # a second run refuses to clobber; with --force it replaces
    assert CliRunner().invoke(app, ["demo", "--out", str(out)]).exit_code == 2


def test_pretrained_mode_embeds_into_a_trained_model(digits, digits_host):
    key = generate_key("adi", num_classes=10, input_shape=digits.input_shape, seed=9, options={"size": 50})
    clean = digits_host
    before = [p.detach().clone() for p in clean.model.parameters()]
    assert not verify_model(clean.model, key).owned
    base = LoadedModel(clean.model, clean.spec, {}, Path("<in memory>"))
    tuned = train_model(digits, TrainConfig(epochs=8, batch_size=64, lr=0.01, schedule="constant", seed=1),
                        key=key, mode="pretrained", base=base, embed_options={"per_batch": 16})
    verdict = verify_model(tuned.model, key)
    assert verdict.owned and verdict.p_value < 1e-6
    assert tuned.test_accuracy >= clean.test_accuracy - 0.02
    # the API fine-tuned a copy: the caller's model is as it was
    assert all(torch.equal(a, b) for a, b in zip(before, clean.model.parameters()))
