"""Why the weight-signature reader does not align a suspect to the owner's model (issue 14).

`nnmark attack permute` reorders hidden units and removes a Uchida signature at no cost, because
the reader takes a layer's weights at fixed positions. The obvious repair matches the suspect's
input channels to the owner's marked model before projecting. This script measures what that
does to the null: models made without the key, aligned to the marked model the same way, read
far more signature bits than the Binomial(T, 1/2) the verdict states — the matching copies the
marked layer's shape into any model. So the reader stays position-bound, and `permute` stays in
the robustness table as a removal.

    python3 benchmarks/uchida_alignment_null.py --models 60
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from nnmark.api import generate_key, verify_model
from nnmark.data import load_dataset
from nnmark.models import ModelSpec, create_model
from nnmark.schemes.uchida import SignatureRegulariser, averaged_weight, find_weight


def align(weight: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Input channels of ``weight`` reordered to best match ``reference``'s (sorted slices)."""
    def describe(w):
        slices = w.detach().transpose(0, 1).flatten(2).sort(dim=1).values.flatten(1)
        return slices / slices.norm(dim=1, keepdim=True).clamp_min(1e-12)

    _, matched = linear_sum_assignment(torch.cdist(describe(weight), describe(reference)).numpy())
    return weight[:, torch.as_tensor(matched).argsort()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=60, help="Keyless models to read.")
    parser.add_argument("--keys", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(2)
    data = load_dataset("digits")
    spec = ModelSpec("small-cnn", 10, data.input_shape, data.mean, data.std)
    print(f"{'key':>4} {'T':>4} {'aligned: mean':>14} {'max':>5} {'plain: mean':>12} {'max':>5}  (null: mean T/2, sd sqrt(T)/2)")
    for index in range(args.keys):
        key = generate_key("uchida", num_classes=10, input_shape=data.input_shape, seed=4 + index, model_spec=spec)
        marked = create_model(spec, seed=0)
        hook = SignatureRegulariser(key, strength=1.0)  # the signature written by the regulariser alone
        hook.setup(marked, torch.device("cpu"))
        optimizer = torch.optim.SGD(marked.parameters(), lr=0.1)
        for _ in range(60):
            optimizer.zero_grad()
            hook.extra_loss(marked, None).backward()
            optimizer.step()
        reference = find_weight(marked, key)[0].detach()
        projection, bits = key.tensors["projection"], key.tensors["bits"]
        aligned, plain = [], []
        for seed in range(args.models):
            suspect = create_model(spec, seed=100 + seed)
            weight = find_weight(suspect, key)[0].detach()
            decoded = (projection @ averaged_weight(align(weight, reference)) > 0).float()
            aligned.append(int((decoded == bits).sum()))
            plain.append(verify_model(suspect, key).matches)
        total = len(bits)
        print(f"{index:>4} {total:>4} {np.mean(aligned):>14.1f} {max(aligned):>5} {np.mean(plain):>12.1f} {max(plain):>5}")


if __name__ == "__main__":
    main()
