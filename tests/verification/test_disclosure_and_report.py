import json

import pytest
from typer.testing import CliRunner

from nnmark.api import verify_model
from nnmark.cli import app
from nnmark.errors import NNMarkError
from nnmark.models import save_model
from nnmark.schemes import get_scheme, save_key

pytestmark = pytest.mark.slow  # every test here uses a model trained for it


def test_subset_keeps_matching_rows_and_records_its_origin(adi_key, marked):
    scheme = get_scheme("adi")
    part = scheme.subset(adi_key, 15, "sha256:" + "0" * 64)
    indices = part.params["subset"]["indices"]
    assert len(indices) == 15 and indices == sorted(indices)
    assert part.tensors["inputs"].equal(adi_key.tensors["inputs"][indices])
    assert part.tensors["labels"].equal(adi_key.tensors["labels"][indices])
    assert part.params["subset"]["parent_commitment"] == adi_key.commitment
    whole, partial = verify_model(marked.model, adi_key), verify_model(marked.model, part)
    assert partial.total == 15 and partial.p_value > whole.p_value  # less revealed, weaker evidence
    with pytest.raises(NNMarkError, match="subset size out of range"):
        scheme.subset(adi_key, 41, "x")


def test_uchida_subset_takes_bits():
    from nnmark.api import generate_key
    from nnmark.models import ModelSpec

    key = generate_key("uchida", num_classes=10, input_shape=(1, 16, 16), seed=1,
                       model_spec=ModelSpec("small-cnn", 10, (1, 16, 16), (0.5,), (0.5,)))
    part = get_scheme("uchida").subset(key, 64, "x")
    assert part.tensors["projection"].shape == (64, 288) and part.tensors["bits"].shape == (64,)
    get_scheme("uchida").validate_key(part)  # a subset still redraws from the seed at its indices


def test_report_and_subset_from_the_cli(tmp_path, marked, adi_key):
    save_model(marked.model, marked.spec, tmp_path / "m")
    save_key(adi_key, tmp_path / "k")
    runner = CliRunner()
    result = runner.invoke(app, ["verify", "--model", str(tmp_path / "m"), "--key", str(tmp_path / "k"),
                                 "--subset", "20", "--report", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    evidence = json.loads((tmp_path / "r" / "evidence.json").read_text())
    assert evidence["total"] == 20 and evidence["key"]["subset"]["of"] == 40
    assert evidence["key"]["commitment"] == adi_key.commitment  # the committed key, not the subset
    assert len(evidence["suspect"]["sha256"]) == 64 and evidence["software"]["nnmark"]
    page = (tmp_path / "r" / "report.html").read_text()
    assert "OWNED" in page and adi_key.commitment in page and "20 of 40 key items" in page
    assert page.count("<figure") == 20 and "data:image/png;base64," in page
    assert "only 20 of 40 key items were tested" in page and evidence["disclosure"]["items_in_key"] == 40
    again = runner.invoke(app, ["verify", "--model", str(tmp_path / "m"), "--key", str(tmp_path / "k"),
                                "--report", str(tmp_path / "r")])
    assert again.exit_code == 2 and "--force" in again.output


def test_export_and_calibrate_commands(tmp_path, marked, control, adi_key):
    save_model(marked.model, marked.spec, tmp_path / "m")
    save_model(control.model, control.spec, tmp_path / "c")
    save_key(adi_key, tmp_path / "k")
    runner = CliRunner()
    assert runner.invoke(app, ["export", "onnx", str(tmp_path / "m"), "--out", str(tmp_path / "m.onnx")]).exit_code == 0
    result = runner.invoke(app, ["verify", "--model", str(tmp_path / "m.onnx"), "--key", str(tmp_path / "k"), "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["owned"]
    assert json.loads(result.output)["suspect"]["kind"] == "onnx file"
    result = runner.invoke(app, ["calibrate", "--key", str(tmp_path / "k"), "--models", "0",
                                 "--control", str(tmp_path / "c"), "--out", str(tmp_path / "cal.json")])
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "cal.json").read_text())
    study = written["study"]
    assert study["empirical_false_positive_rate"] == 0 and study["controls"][0]["model"] == str(tmp_path / "c")
    assert written["format"] == "nnmark-null/1" and written["key_commitment"] == adi_key.commitment
    assert "bound the false-positive rate only below" in result.output
    assert runner.invoke(app, ["export", "tflite", str(tmp_path / "m"), "--out", "x"]).exit_code == 2
