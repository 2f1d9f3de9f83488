"""The paper's experiment on one dataset: decoder size x γ, with the SWM and Trojan baselines,
in the layout of its Tables 1 and 2; an image grid; and the use-case measurements."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from nnmark.data.base import Dataset
from nnmark.extras import require
from nnmark.encdec.baselines import SWM, train_detector, trojan_stamp
from nnmark.encdec.content import ContentLoss
from nnmark.encdec.metrics import decoding_success, image_damage
from nnmark.models.fatty_skinny import Decoder, Encoder
from nnmark.encdec.train import JointConfig, train_jointly
from nnmark.encdec.usecases import RejectOrBypass, train_injection
from nnmark.models.decode_inject import implant
from nnmark.models.store import Classifier, ModelSpec
from nnmark.models.inference import evaluate


def run_sweep(data: Dataset, content: ContentLoss, *, sizes=(1, 2, 3), gammas=(0.01, 0.05, 0.1),
              epochs: int = 20, seed: int = 0, decoder_style: str = "pooled", progress=None,
              log=None) -> dict[str, Any]:
    log = log or (lambda message: None)
    train_x, test_x = data.train_x, data.test_x
    columns: list[dict[str, Any]] = []
    for pattern in ("0101010101", "0000100001"):
        swm = SWM(pattern, seed=seed)
        marked = swm.encode(test_x)
        columns.append({"method": f"SWM ({pattern})", **decoding_success(swm.decode, test_x, marked),
                        **image_damage(marked, test_x)})
    log("Trojan baseline")
    detector = train_detector(Decoder(data.input_shape[0], 3), train_x, trojan_stamp(train_x, seed), seed=seed)
    with torch.no_grad():
        marked = trojan_stamp(test_x, seed)
        columns.append({"method": "Trojan", **decoding_success(lambda x: detector(x) > 0, test_x, marked),
                        **image_damage(marked, test_x)})
    networks = {}
    for size in sizes:
        for gamma in gammas:
            log(f"encoder/decoder: decoder size {size}, gamma {gamma:g}")
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                encoder = Encoder(data.input_shape[0])
                decoder = Decoder(data.input_shape[0], size, style=decoder_style, image_size=tuple(data.input_shape[1:]))
            result = train_jointly(encoder, decoder, train_x, content, JointConfig(epochs=epochs, gamma=gamma, seed=seed),
                                   progress=progress)
            with torch.no_grad():
                marked = encoder(test_x)
                columns.append({"method": "ours", "decoder_size": size, "gamma": gamma,
                                **decoding_success(lambda x: decoder(x) > 0, test_x, marked),
                                **image_damage(marked, test_x), "train_seconds": round(result.seconds, 1)})
            networks[(size, gamma)] = (encoder, decoder)
    return {"dataset": data.name, "content_loss": content.name, "content_scale": content.scale,
            "decoder_style": decoder_style, "epochs": epochs, "columns": columns,
            "protocol": f"trained on {len(train_x)} samples, measured on the other {len(test_x)}, each marked and unmarked"}, networks


def paper_table(sweep: dict[str, Any]) -> str:
    columns = sweep["columns"]
    heads = [c["method"] if c["method"] != "ours" else f"size {c['decoder_size']}, γ={c['gamma']:g}" for c in columns]
    rows = [("Decoding success (both)", "decoding_success", "{:.1%}"),
            ("… on unmarked", "decoding_success_unmarked", "{:.1%}"),
            ("… on marked", "decoding_success_marked", "{:.1%}"),
            ("MS-SSIM", "ms_ssim", "{:.4f}"), ("PSNR (dB)", "psnr", "{:.2f}"),
            ("Entropy marked / original", "entropy_ratio", "{:.4f}")]
    lines = ["| metric | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
    for label, field, fmt in rows:
        lines.append(f"| {label} | " + " | ".join(fmt.format(c[field]) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def image_grid(encoder: Encoder, images: torch.Tensor, path, count: int = 8) -> None:
    """Rows: original, watermark signal (amplified, centred on grey), watermarked."""
    Image = require("PIL.Image", "plots", "the image grid")

    with torch.no_grad():
        originals = images[:count]
        marked = encoder(originals)
        signal = marked - originals
        scale = 0.5 / signal.abs().max().clamp_min(1e-6)
        rows = [originals, (0.5 + signal * scale).clamp(0, 1), marked]
    tiles = torch.cat([torch.cat(list(row), dim=2) for row in rows], dim=1)  # C, 3H, count*W
    array = (tiles.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    array = array[:, :, 0] if array.shape[2] == 1 else array
    zoom = max(1, 256 // images.shape[-1] // 2)
    Image.fromarray(np.kron(array, np.ones((zoom, zoom) + ((1,) if array.ndim == 3 else ()), dtype=np.uint8))).save(path)


def use_cases(host: Classifier, host_spec: ModelSpec, encoder: Encoder, decoder: Decoder, data: Dataset,
              layer: str | None = None, epochs: int = 30) -> dict[str, Any]:
    """decode&inject as a backdoor (attack success per target label, on marked test images of
    other classes), host accuracy on unmarked inputs with the implant, and reject_or_bypass."""
    with torch.no_grad():
        marked_train, marked_test = encoder(data.train_x), encoder(data.test_x)
    base_accuracy = evaluate(host, data.test_x, data.test_y)
    per_label, accuracies = {}, []
    for target in range(data.num_classes):
        implanted, _ = implant(host, host_spec, decoder, layer)
        train_injection(implanted, marked_train, target, epochs=epochs)
        others = data.test_y != target
        with torch.no_grad():
            hits = (implanted(marked_test[others]).argmax(1) == target).float().mean().item()
        per_label[target] = hits
        accuracies.append(evaluate(implanted, data.test_x, data.test_y))
    gate = RejectOrBypass(host, decoder)
    return {"host_accuracy": base_accuracy, "implanted_accuracy_unmarked_min": min(accuracies),
            "implanted_accuracy_unmarked_max": max(accuracies), "attack_success_per_label": per_label,
            "reject_or_bypass": {"rejected_unmarked": (~gate.admitted(data.test_x)).float().mean().item(),
                                 "admitted_marked": gate.admitted(marked_test).float().mean().item()}}
