import json

import pytest
from typer.testing import CliRunner

from nnmark.cli import app

pytestmark = pytest.mark.slow  # every test here uses a model trained for it

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A key and a briefly trained watermarked model, made through the CLI."""
    root = tmp_path_factory.mktemp("cli")
    result = invoke("keygen", "adi", "--num-classes", 10, "--input-shape", "1,16,16", "--size", 40,
                    "--seed", 5, "--out", root / "key")
    assert result.exit_code == 0, result.output
    result = invoke("train", "--data", "digits", "--watermark", root / "key", "--epochs", 8,
                    "--batch-size", 64, "--lr", 0.05, "--embed", "per_batch=16", "--quiet",
                    "--out", root / "model")
    assert result.exit_code == 0, result.output
    return root


def test_keygen_prints_and_stores_commitment(workspace):
    meta = json.loads((workspace / "key" / "key.json").read_text())
    assert meta["scheme"] == "adi" and meta["params"] == {"size": 40, "seed": 5, "seed_chosen": True}
    assert len(meta["commitment"]) == 64 and len(meta["salt"]) == 64 and meta["format"] == "nnmark-key/2"


def test_verify_json_reports_owned(workspace):
    result = invoke("verify", "--model", workspace / "model", "--key", workspace / "key", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert record["owned"] and record["p_value"] < 1e-6 and record["total"] == 40
    assert len(record["suspect"]["sha256"]) == 64
    assert record["key"]["commitment"] == json.loads((workspace / "key" / "key.json").read_text())["commitment"]


def test_verify_table(workspace):
    result = invoke("verify", "--model", workspace / "model", "--key", workspace / "key")
    assert result.exit_code == 0 and "OWNED" in result.output and "decision rule" in result.output


def test_pretrained_mode_fine_tunes_from(workspace, tmp_path):
    result = invoke("train", "--from", workspace / "model", "--watermark", workspace / "key", "--epochs", 1,
                    "--batch-size", 64, "--embed", "per_batch=8", "--quiet", "--out", tmp_path / "tuned")
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "tuned" / "model.json").read_text())
    assert meta["metadata"]["watermark"] == {"scheme": "adi", "mode": "pretrained"}
    assert meta["metadata"]["training"]["lr"] == pytest.approx(0.01)


def test_refuses_to_overwrite_without_force(workspace):
    before = (workspace / "model" / "model.safetensors").read_bytes()
    result = invoke("train", "--epochs", 1, "--quiet", "--out", workspace / "model")
    assert result.exit_code == 2 and "--force" in result.output
    assert (workspace / "model" / "model.safetensors").read_bytes() == before


@pytest.mark.parametrize("args,message", [
    (["verify", "--model", "missing-dir", "--key", "{key}"], "missing-dir: suspect model does not exist"),
    (["verify", "--model", "{model}", "--key", "{key5}"], "field 'num_classes'"),
    (["verify", "--model", "{model}", "--key", "{key}", "--alpha", "2"], "field 'alpha'"),
    (["train", "--data", "imagenet", "--out", "{tmp}/x"], "unknown dataset 'imagenet'"),
    (["train", "--model", "vgg", "--out", "{tmp}/x"], "unknown model 'vgg'"),
    (["train", "--data", "mnist", "--data-dir", "{tmp}/nowhere", "--out", "{tmp}/x"], "data directory does not exist"),
    (["train", "--watermark", "{key}", "--embed", "speed=3", "--out", "{tmp}/x"], "--embed takes NAME=VALUE"),
    (["train", "--watermark", "{key}", "--mode", "sideways", "--out", "{tmp}/x"], "unknown mode 'sideways'"),
    (["keygen", "adi", "--input-shape", "3,32", "--num-classes", "10", "--out", "{tmp}/k"], "field 'input-shape'"),
    (["keygen", "adi", "--out", "{tmp}/k"], "give --num-classes and --input-shape"),
    (["encdec", "sweep", "--train-fraction", "2", "--out", "{tmp}/s"], "field '--train-fraction'"),
])
def test_bad_input_gets_one_clear_line_and_exit_2(workspace, tmp_path, args, message):
    key5 = tmp_path / "key5"
    assert invoke("keygen", "adi", "--num-classes", 5, "--input-shape", "1,16,16", "--size", 5, "--out", key5).exit_code == 0
    filled = [a.format(key=workspace / "key", model=workspace / "model", key5=key5, tmp=tmp_path) for a in args]
    result = invoke(*filled)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_tampered_key_is_refused_by_verify(workspace, tmp_path):
    import shutil
    shutil.copytree(workspace / "key", tmp_path / "key")
    meta = json.loads((tmp_path / "key" / "key.json").read_text())
    meta["params"]["size"] = 41
    (tmp_path / "key" / "key.json").write_text(json.dumps(meta))
    result = invoke("verify", "--model", workspace / "model", "--key", tmp_path / "key")
    assert result.exit_code == 2 and "does not match its commitment" in result.output


def test_keygen_takes_sizes_from_a_model(workspace, tmp_path):
    result = invoke("keygen", "adi", "--model", workspace / "model", "--size", 10, "--out", tmp_path / "k")
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "k" / "key.json").read_text())
    assert meta["input_shape"] == [1, 16, 16] and meta["num_classes"] == 10
    assert isinstance(meta["params"]["seed"], int)  # a random secret seed was drawn and recorded


def test_list_and_version():
    assert "adi" in invoke("list").output and "digits" in invoke("list").output
    assert invoke("--version").output.startswith("nnmark ")


def test_demo_runs_another_scheme(tmp_path):
    result = invoke("demo", "--scheme", "uchida", "--epochs", 2, "--out", tmp_path / "d")
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "d" / "summary.json").read_text())
    assert summary["scheme"] == "uchida" and summary["access"] == "white-box"
    assert summary["watermarked"]["verify"]["total"] == 256
    assert 0 <= summary["clean"]["verify"]["bit_error_rate"] <= 1


def test_demo_of_a_mark_in_the_api_catches_the_extracted_model(tmp_path):
    result = invoke("demo", "--scheme", "dawn", "--epochs", 6, "--out", tmp_path / "d")
    assert result.exit_code == 0, result.output
    assert "every query the client sent" in " ".join(result.output.split())  # the guarantee's condition, in words
    summary = json.loads((tmp_path / "d" / "summary.json").read_text())
    assert summary["rows"] == ["extracted", "independent"] and summary["thief"]["marked_queries"] >= 5
    extracted, independent = summary["extracted"]["verify"], summary["independent"]["verify"]
    assert extracted["owned"] and extracted["null_kind"] == "exact" and not independent["owned"]
    assert summary["owner"]["api_test_accuracy"] < summary["owner"]["test_accuracy"]  # what the wrong answers cost
    assert {p.name for p in (tmp_path / "d").iterdir()} >= {"serving-key", "key", "owner", "extracted", "independent"}


def test_keygen_for_data_and_layer_schemes(tmp_path):
    result = invoke("keygen", "trojan", "--num-classes", 10, "--input-shape", "1,16,16", "--out", tmp_path / "t")
    assert result.exit_code == 2 and "give --data" in result.output
    result = invoke("keygen", "content", "--data", "digits", "--text", "OWN", "--target", 3, "--size", 20,
                    "--out", tmp_path / "c")
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "c" / "key.json").read_text())
    assert meta["params"]["text"] == "OWN" and meta["params"]["target"] == 3
    result = invoke("keygen", "uchida", "--data", "digits", "--bits", 64, "--message", "Alice", "--out", tmp_path / "u")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "u" / "key.json").read_text())["params"]["bits_from"] == "message"


def test_distill_mode_and_calibration_flags(workspace, tmp_path):
    result = invoke("train", "--mode", "distill", "--from", workspace / "model", "--epochs", 1, "--quiet",
                    "--out", tmp_path / "student")
    assert result.exit_code == 0, result.output
    result = invoke("verify", "--model", workspace / "model", "--key", workspace / "key",
                    "--calibrate-with", tmp_path / "student", "--json")
    assert result.exit_code == 2 and "exact null" in result.output  # adi needs no controls
    both = invoke("verify", "--model", workspace / "model", "--key", workspace / "key", "--null", tmp_path / "n.json",
                  "--calibrate-with", tmp_path / "student")
    assert both.exit_code == 2 and "not both" in both.output


def test_a_chosen_seed_is_warned_about(tmp_path):
    result = invoke("keygen", "adi", "--num-classes", 10, "--input-shape", "1,8,8", "--size", 5, "--seed", 7,
                    "--out", tmp_path / "k")
    assert result.exit_code == 0 and "only as secret as that seed" in " ".join(result.output.split())
    quiet = invoke("keygen", "adi", "--num-classes", 10, "--input-shape", "1,8,8", "--size", 5, "--out", tmp_path / "k2")
    assert quiet.exit_code == 0 and "secret as that seed" not in quiet.output


def test_one_target_keygen_screens_and_verify_demands_a_measured_null(workspace, tmp_path):
    result = invoke("keygen", "trojan", "--data", "digits", "--size", 30, "--probes", 20, "--screen-models", 2,
                    "--out", tmp_path / "k")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "screening models sent at most" in text and "no exact null" in text
    refused = invoke("verify", "--model", workspace / "model", "--key", tmp_path / "k")
    assert refused.exit_code == 2 and "nnmark calibrate" in refused.output


def test_the_one_target_workflow_from_the_readme(tmp_path):
    """keygen (screened) -> train -> calibrate (controls, null file) -> verify --null: the marked
    model beats every control, a keyless model does not, and both verdicts say the null is estimated."""
    steps = [
        ("keygen", "trojan", "--data", "digits", "--size", 50, "--probes", 50, "--screen-models", 3, "--seed", 4,
         "--out", tmp_path / "k"),
        ("train", "--data", "digits", "--watermark", tmp_path / "k", "--epochs", 5, "--batch-size", 64, "--lr", 0.05,
         "--embed", "per_batch=16", "--quiet", "--out", tmp_path / "marked"),
        ("train", "--data", "digits", "--epochs", 5, "--batch-size", 64, "--lr", 0.05, "--seed", 3, "--quiet",
         "--out", tmp_path / "clean"),
        ("calibrate", "--key", tmp_path / "k", "--models", 10, "--epochs", 3, "--out", tmp_path / "null.json"),
    ]
    for step in steps:
        result = invoke(*step)
        assert result.exit_code == 0, (step[0], result.output)
    records = {}
    for name in ("marked", "clean"):
        result = invoke("verify", "--model", tmp_path / name, "--key", tmp_path / "k", "--null", tmp_path / "null.json",
                        "--alpha", 0.05, "--json")
        assert result.exit_code == 0, result.output
        records[name] = json.loads(result.output)
    assert records["marked"]["owned"] and not records["clean"]["owned"]
    assert all(r["null_kind"] == "estimated" and r["false_positive_rate"] is None for r in records.values())
    assert records["marked"]["matches"] > max(records["marked"]["details"]["control_counts"])
    table = invoke("verify", "--model", tmp_path / "marked", "--key", tmp_path / "k", "--null", tmp_path / "null.json")
    assert "error rate: estimated" in " ".join(table.output.split()).lower()
