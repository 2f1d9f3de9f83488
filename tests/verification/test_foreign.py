import pickle
from pathlib import Path

import pytest
import torch

from nnmark.api import generate_key, verify_model
from nnmark.errors import NNMarkError
from nnmark.models import ModelSpec, create_model
from nnmark.models.export import export_onnx
from nnmark.verification.foreign import OnnxSuspect
from nnmark.workflows.suspects import open_suspect

from tests.serving.servers import foreign_onnx

from ..schemes.fakes import sign_with_regulariser


def test_onnx_round_trip_black_box(tmp_path, marked, control, adi_key):
    export_onnx(marked.model, marked.spec, tmp_path / "marked.onnx")
    export_onnx(control.model, control.spec, tmp_path / "control.onnx")
    suspect = OnnxSuspect(tmp_path / "marked.onnx", batch_size=16)
    owned = verify_model(suspect, adi_key)
    assert owned.owned and owned.matches == verify_model(marked.model, adi_key).matches
    assert suspect.queries == 40
    with torch.no_grad():
        logits = marked.model.eval()(adi_key.tensors["inputs"])
    assert torch.allclose(suspect.scores(adi_key.tensors["inputs"]), logits, atol=1e-4)  # scores are the logits
    assert not verify_model(OnnxSuspect(tmp_path / "control.onnx"), adi_key).owned
    with pytest.raises(NNMarkError, match="already exists"):
        export_onnx(control.model, control.spec, tmp_path / "control.onnx")
    exported = (tmp_path / "marked.onnx").read_bytes()
    for leak in (b"stack_trace", b"File \"", str(Path(__file__).parents[2]).encode(), b"site-packages"):
        assert leak not in exported  # no local paths or source layout travel with the model


def test_foreign_onnx_fixed_batch_labels_first(tmp_path, marked, control, adi_key):
    owned = OnnxSuspect(foreign_onnx(marked.model, marked.spec.input_shape, tmp_path / "m.onnx"))
    assert owned.fixed_batch == 1 and owned.output_name == "scores" and owned.num_classes == 10
    verdict = verify_model(owned, adi_key)
    assert verdict.owned and verdict.matches == verify_model(marked.model, adi_key).matches
    assert not verify_model(OnnxSuspect(foreign_onnx(control.model, control.spec.input_shape,
                                                     tmp_path / "c.onnx")), adi_key).owned
    wrong = generate_key("adi", num_classes=5, input_shape=adi_key.input_shape, seed=2, options={"size": 20})
    with pytest.raises(NNMarkError, match="answers 10 classes; the key is for 5"):
        open_suspect(wrong, model=tmp_path / "m.onnx")


def test_onnx_white_box_reads_initializers(tmp_path):
    spec = ModelSpec("small-cnn", 10, (1, 16, 16), (0.5,), (0.5,))
    key = generate_key("uchida", num_classes=10, input_shape=(1, 16, 16), seed=4, model_spec=spec, options={"bits": 64})
    model = sign_with_regulariser(create_model(spec, seed=0), key, steps=60)
    export_onnx(model.eval(), spec, tmp_path / "signed.onnx")
    export_onnx(create_model(spec, seed=3).eval(), spec, tmp_path / "other.onnx")
    verdict = verify_model(OnnxSuspect(tmp_path / "signed.onnx"), key)
    assert verdict.owned and verdict.matches == 64 and verdict.details["layer_matched_by"] == "name"
    assert not verify_model(OnnxSuspect(tmp_path / "other.onnx"), key).owned


def test_pytorch_checkpoints_and_torchscript(tmp_path, marked, adi_key):
    torch.save(marked.model.state_dict(), tmp_path / "full.pt")
    torch.save({"state_dict": marked.model.net.state_dict()}, tmp_path / "bare.pth")
    torch.jit.trace(marked.model.eval(), torch.rand(2, 1, 16, 16)).save(str(tmp_path / "traced.ts"))
    expected = verify_model(marked.model, adi_key).matches
    for name, options in (("full.pt", {}), ("bare.pth", {"mean": marked.spec.mean, "std": marked.spec.std}),
                          ("traced.ts", {})):
        suspect, described = open_suspect(adi_key, model=tmp_path / name, **options)
        assert verify_model(suspect, adi_key).matches == expected, name
        assert len(described["sha256"]) == 64 and "warning" not in described
    # a TorchScript file names its own network: --architecture is not what it records
    assert open_suspect(adi_key, model=tmp_path / "traced.ts", architecture="resnet18")[1]["kind"] == "torchscript file"
    five = generate_key("adi", num_classes=5, input_shape=(1, 16, 16), seed=2, options={"size": 20})
    with pytest.raises(NNMarkError, match="TorchScript model .* answers 10 classes; the key is for 5"):
        open_suspect(five, model=tmp_path / "traced.ts")


def test_a_bare_state_dict_without_normalisation_is_warned_about(tmp_path, marked, adi_key):
    """The audit's case: a watermarked network's bare state dict, verified without --normalize-like,
    answered one class to nearly everything and gave a confident 'not owned'."""
    from nnmark.workflows.verify import verify_suspect

    torch.save(marked.model.net.state_dict(), tmp_path / "bare.pt")
    result = verify_suspect(adi_key, model=tmp_path / "bare.pt")
    assert not result.verdict.owned  # queried without its normalisation, the network answers nonsense
    assert any("carries no input normalisation" in w for w in result.record["warnings"])
    right = verify_suspect(adi_key, model=tmp_path / "bare.pt", mean=marked.spec.mean, std=marked.spec.std)
    assert right.verdict.owned and not any("normalisation" in w for w in right.record["warnings"])


def test_a_suspect_answering_one_class_to_everything_is_warned_about(adi_key):
    from torch import nn

    from nnmark.verification.suspects import ModuleSuspect
    from nnmark.workflows.verify import AnswerWatch

    class OneClass(nn.Module):
        def forward(self, x):
            return torch.nn.functional.one_hot(torch.full((len(x),), 3), 10).float()

    watched = AnswerWatch(ModuleSuspect(OneClass()))
    verdict = verify_model(watched, adi_key)
    assert not verdict.owned
    assert "answered class 3 to 100% of 40 queries" in watched.collapse_warning(adi_key)
    one_target = type(adi_key)(adi_key.scheme, 10, adi_key.input_shape,
                               {**adi_key.tensors, "labels": torch.full((40,), 3)}, adi_key.params)
    assert watched.collapse_warning(one_target) is None  # a key that expects one class is not a warning


def test_checkpoint_with_code_is_refused_not_run(tmp_path, adi_key):
    class Payload:
        def __reduce__(self):
            return (exec, ("open('pwned', 'w').write('x')",))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"state_dict": Payload()}))
    with pytest.raises(NNMarkError, match="weights-only"):
        open_suspect(adi_key, model=tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()


def test_wrong_architecture_and_formats(tmp_path, marked, adi_key):
    torch.save(marked.model.state_dict(), tmp_path / "m.pt")
    with pytest.raises(NNMarkError, match="do not fit architecture 'resnet18'"):
        open_suspect(adi_key, model=tmp_path / "m.pt", architecture="resnet18")
    (tmp_path / "m.h5").write_bytes(b"x")
    with pytest.raises(NNMarkError, match="unknown model format"):
        open_suspect(adi_key, model=tmp_path / "m.h5")
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    with pytest.raises(NNMarkError, match="not a usable ONNX model"):
        open_suspect(adi_key, model=tmp_path / "bad.onnx")
    with pytest.raises(NNMarkError, match="exactly one of"):
        open_suspect(adi_key)
