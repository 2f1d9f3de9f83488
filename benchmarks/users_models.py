"""Every scheme that lives in the model, on every one of three models that are not nnmark's
(docs/own-training.md): a ``nn.Sequential``, a residual network with functional activations and a
Hugging Face vision transformer trained on normalised inputs (tests/integrations/users.py), each
marked in a plain PyTorch loop through ``nnmark.Watermarker`` on the embedded digits.

Per pairing: the verdict on the marked model (at 1e-6 under an exact null; against the null of 20
nnmark controls, plus 2 ViTs for the ViT, otherwise), the verdict on the same model trained without
the mark, both test accuracies, and the seconds it took. Then, for the one-target schemes, how
many of a key's triggers innocent ViTs of several seeds send to its target, beside nnmark's
controls: the reason a null must be measured on controls of the suspect's kind.

    python3 benchmarks/users_models.py [--seeds 1] [--innocent-vits 5]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nnmark  # noqa: E402
from nnmark.api import measure_null  # noqa: E402
from nnmark.data import load_dataset  # noqa: E402
from nnmark.errors import NNMarkError  # noqa: E402
from nnmark.schemes import SCHEMES, get_scheme  # noqa: E402
from nnmark.verification.suspects import Normalised  # noqa: E402
from nnmark.workflows.controls import train_controls  # noqa: E402
from tests.integrations.users import (  # noqa: E402
    ARCHITECTURES, EPOCHS, KEY_OPTIONS, accuracy, mark, normalization_of, plain_loop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=1, help="Keys (and trainings) per pairing.")
    parser.add_argument("--innocent-vits", type=int, default=5, help="Innocent ViTs to try the one-target keys on.")
    parser.add_argument("--schemes", default=None, help="Comma-separated (default: every in-model scheme).")
    parser.add_argument("--architectures", default=",".join(ARCHITECTURES))
    parser.add_argument("--controls", type=int, default=20, help="nnmark control models behind one-target nulls.")
    args = parser.parse_args()
    started = time.perf_counter()
    data = load_dataset("digits")
    schemes = args.schemes.split(",") if args.schemes else [
        name for name in SCHEMES.names() if not get_scheme(name).marks_the_api and not get_scheme(name).embeds_nothing]
    estimated = any(get_scheme(name).null_kind == "estimated" for name in schemes) or args.innocent_vits
    controls = train_controls(data, args.controls, epochs=4, seed=700) if estimated else []
    screening = [c.model for c in train_controls(data, 6, epochs=3, seed=800)] if estimated else []
    vit_norm = normalization_of("vit", data)
    vits = [Normalised(plain_loop(ARCHITECTURES["vit"](), data.train_x, data.train_y, epochs=EPOCHS["vit"],
                                  normalization=vit_norm, seed=seed), vit_norm)
            for seed in (1, 2)] if estimated and "vit" in args.architectures else []
    innocent = {name: plain_loop(build(), data.train_x, data.train_y, epochs=EPOCHS[name],
                                 normalization=normalization_of(name, data))
                for name, build in ARCHITECTURES.items() if name in args.architectures.split(",")}
    print("| scheme | model | marked: evidence, p, verdict | same model unmarked | test accuracy unmarked → marked | seconds |")
    print("|---|---|---|---|---|---|")
    for scheme in schemes:
        implementation = get_scheme(scheme)
        for architecture, clean in innocent.items():
            norm = normalization_of(architecture, data)
            for seed in range(args.seeds):
                began = time.perf_counter()
                try:
                    key = nnmark.generate_key(scheme, num_classes=10, input_shape=data.input_shape, seed=5 + seed,
                                              dataset=data, model=clean, normalization=norm,
                                              options=KEY_OPTIONS[scheme],
                                              screen_with=screening if implementation.null_kind == "estimated" else None)
                except NNMarkError as refused:
                    print(f"| {scheme} | {architecture} | keygen refused: {refused} | | | |", flush=True)
                    continue
                torch.manual_seed(seed)
                model, _ = mark(scheme, architecture, key, data, clean)
                null = None
                if implementation.null_kind == "estimated":
                    null = measure_null(key, controls + (vits if architecture == "vit" else []))
                alpha = 1e-6 if implementation.null_kind == "exact" else 0.01 if scheme == "frontier" else 1e-4
                marked = nnmark.verify_model(model, key, null=null, alpha=alpha, normalization=norm)
                unmarked = nnmark.verify_model(clean, key, null=null, alpha=alpha, normalization=norm)
                print(f"| {scheme} | {architecture} | {marked.matches}/{marked.total}, {marked.p_value_text}, "
                      f"{'OWNED' if marked.owned else 'not owned'} at {alpha:g} | {unmarked.matches}/{unmarked.total}, "
                      f"{'OWNED' if unmarked.owned else 'not owned'} | "
                      f"{100 * accuracy(clean, data.test_x, data.test_y, norm):.1f}% → "
                      f"{100 * accuracy(model, data.test_x, data.test_y, norm):.1f}% | "
                      f"{time.perf_counter() - began:.1f} |", flush=True)
    if not args.innocent_vits:
        print(f"\n{time.perf_counter() - started:.0f} s")
        return
    print()
    print("Innocent ViTs (seeds 10, 11, ...) on one-target keys: triggers sent to the target, beside the most any "
          "of the 20 nnmark controls sent")
    innocents = [plain_loop(ARCHITECTURES["vit"](), data.train_x, data.train_y, epochs=EPOCHS["vit"],
                            normalization=vit_norm, seed=10 + seed) for seed in range(args.innocent_vits)]
    for scheme in ("content", "noise", "trojan", "unrelated", "ewe"):
        key = nnmark.generate_key(scheme, num_classes=10, input_shape=data.input_shape, seed=5, dataset=data,
                                  options=KEY_OPTIONS[scheme], screen_with=screening)
        null = measure_null(key, controls)
        sent = [nnmark.verify_model(v, key, null=null, normalization=vit_norm).matches for v in innocents]
        print(f"- {scheme}: innocent ViTs {sent} of {key.item_count}; controls at most {int(max(null.counts()))}")
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
