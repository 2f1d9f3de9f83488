"""The Watermarker in the loops people train in: a plain PyTorch loop, PyTorch Lightning (the
callback) and Hugging Face's Trainer (on a vision transformer, with its image normalisation). Each
embeds an adi key and a Uchida signature into a tiny model that ends OWNED at 1e-6, and the same
recipe without the mark is not owned. Then the settings a real run has: gradient accumulation,
autocast, a state to checkpoint, and the mistakes that would otherwise be silent."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, TensorDataset

import nnmark
from nnmark.errors import NNMarkError

from .users import plain_loop, sequential, vit

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def keys(digits):
    adi = nnmark.generate_key("adi", num_classes=10, input_shape=digits.input_shape, seed=4, options={"size": 30})
    uchida = nnmark.generate_key("uchida", num_classes=10, input_shape=digits.input_shape, seed=4, model=sequential(),
                                 options={"bits": 64})
    return {"adi": adi, "uchida": uchida}


def options(key) -> dict | None:
    return {"per_batch": 16} if key.scheme == "adi" else None


def owned(model, keys, normalization=None) -> dict[str, bool]:
    return {name: nnmark.verify_model(model, key, normalization=normalization).owned for name, key in keys.items()}


def test_a_plain_loop(digits, keys):
    results = {}
    for name, key in [*keys.items(), ("none", None)]:
        model = sequential()
        watermarker = nnmark.Watermarker(key, model, options=options(key)) if key else None
        plain_loop(model, digits.train_x, digits.train_y, epochs=10, watermarker=watermarker)
        results[name] = owned(model, keys)
    assert results["adi"]["adi"] and results["uchida"]["uchida"], results
    assert not any(results["none"].values()), results


def test_lightning(digits, keys):
    import lightning as L

    from nnmark.integrations.lightning import WatermarkCallback

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = sequential()

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return F.cross_entropy(self(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)

    results = {}
    for name, key in [*keys.items(), ("none", None)]:
        torch.manual_seed(0)
        module = Module()
        callbacks = [WatermarkCallback(key, options=options(key), network="net")] if key else []
        trainer = L.Trainer(max_epochs=10, accelerator="cpu", logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks)
        trainer.fit(module, DataLoader(TensorDataset(digits.train_x, digits.train_y), batch_size=64, shuffle=True))
        assert "training_step" not in vars(module)  # the callback unwrapped its step after the fit
        results[name] = owned(module.net.eval(), keys)
    assert results["adi"]["adi"] and results["uchida"]["uchida"], results
    assert not any(results["none"].values()), results


class PixelDataset(Dataset):
    """What an image dataset looks like after a Hugging Face image processor: normalised pixel values."""

    def __init__(self, images, labels, normalization):
        mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in normalization)
        self.images, self.labels = (images - mean) / std, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return {"pixel_values": self.images[index], "labels": self.labels[index]}


def test_hugging_face_trainer_on_a_vision_transformer(digits, tmp_path):
    import transformers

    from nnmark.integrations.transformers import WatermarkTrainer

    normalization = (digits.mean, digits.std)
    keys = {"adi": nnmark.generate_key("adi", num_classes=10, input_shape=digits.input_shape, seed=4,
                                       options={"size": 30}),
            "uchida": nnmark.generate_key("uchida", num_classes=10, input_shape=digits.input_shape, seed=4, model=vit(),
                                          options={"bits": 32})}
    results = {}
    for name, key in [*keys.items(), ("none", None)]:
        model = vit()
        args = transformers.TrainingArguments(output_dir=str(tmp_path / name), num_train_epochs=15,
                                              per_device_train_batch_size=64, learning_rate=2e-3, report_to=[],
                                              save_strategy="no", logging_strategy="no", use_cpu=True,
                                              disable_tqdm=True, seed=0)
        dataset = PixelDataset(digits.train_x, digits.train_y, normalization)
        if key is None:
            trainer = transformers.Trainer(model=model, args=args, train_dataset=dataset)
        else:
            trainer = WatermarkTrainer(model=model, args=args, train_dataset=dataset, watermark_key=key,
                                       watermark_options=options(key), watermark_normalization=normalization)
        trainer.train()
        results[name] = owned(model.eval(), keys, normalization)
    assert results["adi"]["adi"] and results["uchida"]["uchida"], results
    assert not any(results["none"].values()), results


def test_a_saved_hugging_face_model_is_a_suspect_and_code_it_names_is_refused(tmp_path, digits):
    import json

    from typer.testing import CliRunner

    from nnmark.cli import app

    model = vit()
    model.save_pretrained(tmp_path / "hf")
    key = nnmark.generate_key("adi", num_classes=10, input_shape=digits.input_shape, seed=4, options={"size": 20})
    nnmark.save_key(key, tmp_path / "key")
    run = lambda *args: CliRunner().invoke(app, [str(a) for a in args])  # noqa: E731
    done = run("verify", "--model", f"hf:{tmp_path / 'hf'}", "--key", tmp_path / "key", "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["suspect"]["kind"] == "hugging face model directory"
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    (tmp_path / "hf" / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoModel": "evil.Model"}}))
    refused = run("verify", "--model", f"hf:{tmp_path / 'hf'}", "--key", tmp_path / "key")
    assert refused.exit_code == 2 and "auto_map" in refused.output and "Traceback" not in refused.output
    (tmp_path / "hf" / "config.json").write_text(json.dumps(config))
    (tmp_path / "hf" / "model.safetensors").unlink()
    refused = run("verify", "--model", f"hf:{tmp_path / 'hf'}", "--key", tmp_path / "key")
    assert refused.exit_code == 2 and "model.safetensors" in refused.output


def test_accumulation_autocast_and_a_checkpointed_state(digits):
    """Gradient accumulation keeps the mark's share of each optimiser step; bf16 autocast and a
    resumed state (EWE's learnt temperatures, the mixing order) leave the mark as it would be."""
    key = nnmark.generate_key("adi", num_classes=10, input_shape=digits.input_shape, seed=4, options={"size": 30})
    model = sequential()
    accumulated = nnmark.Watermarker(key, model, options={"per_batch": 16}, accumulation=4)
    x = digits.train_x[:16]
    shares = [len(accumulated.mix(x, digits.train_y[:16])[1]) - 16 for _ in range(4)]
    assert shares == [4, 4, 4, 4] and accumulated.step == 1  # 16 per optimiser step, in four parts
    accumulated.close()
    watermarker = nnmark.Watermarker(key, model, options={"per_batch": 16})
    optimiser = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(8):
        for images, labels in DataLoader(TensorDataset(digits.train_x, digits.train_y), batch_size=64, shuffle=True):
            images, labels = watermarker.mix(images, labels)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = model(images)
            loss = F.cross_entropy(logits.float(), labels) + watermarker.loss(logits)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    assert nnmark.verify_model(model.eval(), key).owned
    resumed = nnmark.Watermarker(key, sequential(), options={"per_batch": 16})
    resumed.load_state_dict(watermarker.state_dict())
    taken = [resumed.mix(x, digits.train_y[:16])[1][16:] for _ in range(2)]
    reference = nnmark.Watermarker(key, sequential(), options={"per_batch": 16})
    reference.calls = watermarker.calls
    assert all(torch.equal(a, reference.mix(x, digits.train_y[:16])[1][16:]) for a in taken)


def test_the_mistakes_that_would_be_silent_are_refused(digits):
    key = nnmark.generate_key("adi", num_classes=10, input_shape=digits.input_shape, seed=4, options={"size": 10})
    model = sequential()
    watermarker = nnmark.Watermarker(key, model)
    normalised = (digits.train_x[:32] - 0.3) / 0.3
    with pytest.raises(NNMarkError, match="looks normalised"):
        watermarker.mix(normalised, digits.train_y[:32])
    ewe = nnmark.generate_key("ewe", num_classes=10, input_shape=digits.input_shape, seed=4, dataset=digits,
                              options={"size": 10, "probes": 4})
    entangling = nnmark.Watermarker(ewe, sequential())
    entangling.mix(digits.train_x[:32], digits.train_y[:32])
    with pytest.raises(NNMarkError, match="loss\\(\\) was not called"):
        entangling.mix(digits.train_x[:32], digits.train_y[:32])
    plain = nnmark.Watermarker(key, sequential())
    plain.mix(digits.train_x[:32], digits.train_y[:32])
    with pytest.raises(NNMarkError, match="holds no logits"):
        plain.loss(object())
