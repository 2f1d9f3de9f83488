"""The paper's measures (Tables 1 and 2): decoding success on unmarked and marked samples, and the
damage marking does — MS-SSIM and PSNR (torchmetrics, MS-SSIM set up for small images: three
scales and a 5-pixel Gaussian window), and the ratio of Shannon entropies marked / original."""
from __future__ import annotations

import torch

from nnmark.extras import require

MS_SSIM_BETAS = (0.3, 0.4, 0.3)  # three scales: enough for 16x16 inputs


# torchmetrics is imported where it is used: it costs every nnmark command 0.7 s of start-up.

def ms_ssim(marked: torch.Tensor, original: torch.Tensor) -> float:
    multiscale_structural_similarity_index_measure = require(
        "torchmetrics.functional.image", "encdec").multiscale_structural_similarity_index_measure

    return float(multiscale_structural_similarity_index_measure(
        marked.float(), original.float(), data_range=1.0, kernel_size=3, sigma=0.5, betas=MS_SSIM_BETAS))


def psnr(marked: torch.Tensor, original: torch.Tensor) -> float:
    peak_signal_noise_ratio = require("torchmetrics.functional.image", "encdec").peak_signal_noise_ratio

    return float(peak_signal_noise_ratio(marked.float(), original.float(), data_range=1.0))


def shannon_entropy(images: torch.Tensor, bins: int = 256) -> torch.Tensor:
    """Per-image entropy (bits) of the 8-bit intensity histogram."""
    levels = (images.clamp(0, 1) * (bins - 1)).round().long().flatten(1)
    counts = torch.zeros(len(levels), bins).scatter_add_(1, levels, torch.ones_like(levels, dtype=torch.float))
    p = counts / counts.sum(1, keepdim=True)
    return -(p * torch.log2(p.clamp_min(1e-12))).sum(1)


def entropy_ratio(marked: torch.Tensor, original: torch.Tensor) -> float:
    return float(shannon_entropy(marked).mean() / shannon_entropy(original).mean().clamp_min(1e-12))


def image_damage(marked: torch.Tensor, original: torch.Tensor) -> dict[str, float]:
    return {"ms_ssim": ms_ssim(marked, original), "psnr": psnr(marked, original),
            "entropy_ratio": entropy_ratio(marked, original)}


@torch.no_grad()
def decoding_success(decide, original: torch.Tensor, marked: torch.Tensor) -> dict[str, float]:
    """``decide(images) -> bool`` per image (True = marked). Success on unmarked samples is the
    fraction called unmarked; on marked, the fraction called marked; both over the same samples."""
    unmarked_ok = (~decide(original)).float().mean().item()
    marked_ok = decide(marked).float().mean().item()
    return {"decoding_success_unmarked": unmarked_ok, "decoding_success_marked": marked_ok,
            "decoding_success": (unmarked_ok + marked_ok) / 2}
