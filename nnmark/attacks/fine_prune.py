"""Fine-pruning (Liu, Dolan-Gavitt, Garg, "Fine-Pruning: Defending Against Backdooring Attacks",
RAID 2018): remove the channels of the last convolution that stay dormant on clean data — where a
backdoor tends to hide — then fine-tune. Strength is the fraction of channels removed.

A removed channel has its filter zeroed, and, where a batch-norm follows the convolution, that
channel's scale and shift too, so the channel outputs exactly zero; masks hold during the
fine-tune."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune

from nnmark.attacks.base import Attack, AttackContext, clone, fine_tune, register_attack, task_network
from nnmark.errors import NNMarkError
from nnmark.models.store import Classifier
from nnmark.models.inference import predict_logits

FINETUNE_EPOCHS = 2


def last_conv_and_norm(model: nn.Module) -> tuple[nn.Conv2d, nn.BatchNorm2d | None]:
    modules = list(task_network(model).modules())
    convs = [i for i, m in enumerate(modules) if isinstance(m, nn.Conv2d)]
    if not convs:
        raise NNMarkError("fine-pruning needs a convolution layer")
    index = convs[-1]
    conv = modules[index]
    following = [m for m in modules[index + 1:] if isinstance(m, (nn.BatchNorm2d, nn.Conv2d))]
    norm = following[0] if following and isinstance(following[0], nn.BatchNorm2d) else None
    if norm is not None and norm.num_features != conv.out_channels:
        norm = None
    return conv, norm


@torch.no_grad()
def channel_activity(model: nn.Module, layer: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Mean positive activation per output channel of ``layer`` (after its batch-norm, if any)."""
    totals = []
    handle = layer.register_forward_hook(lambda _m, _i, out: totals.append(out.clamp_min(0).mean(dim=(0, 2, 3))))
    try:
        predict_logits(model, images, device="cpu")
    finally:
        handle.remove()
    return torch.stack(totals).mean(0)


@register_attack("fine-prune")
class FinePrune(Attack):
    summary = "prune dormant channels of the last convolution, then fine-tune (Liu et al. 2018)"
    strength_meaning = "fraction of the last convolution's channels removed"
    strengths = (0.2, 0.4, 0.6, 0.8, 0.9)
    quick_strengths = (0.5, 0.9)
    chain_strength = 0.5

    def epochs(self, strength: float, context: AttackContext) -> int:
        return FINETUNE_EPOCHS

    def apply(self, model: Classifier, strength: float, context: AttackContext) -> Classifier:
        attacked = clone(model).eval()
        conv, norm = last_conv_and_norm(attacked)
        watched = norm if norm is not None else conv
        activity = channel_activity(attacked, watched, context.data.train_x)
        count = int(round(float(strength) * conv.out_channels))
        dormant = torch.argsort(activity)[:count]
        keep = torch.ones(conv.out_channels)
        keep[dormant] = 0
        masked = [(conv, "weight", keep.view(-1, 1, 1, 1).expand_as(conv.weight))]
        if conv.bias is not None:
            masked.append((conv, "bias", keep))
        if norm is not None:
            masked += [(norm, "weight", keep), (norm, "bias", keep)]
        for module, name, mask in masked:
            prune.custom_from_mask(module, name, mask.clone())
        fine_tune(attacked, context, FINETUNE_EPOCHS)
        for module, name, _ in masked:
            prune.remove(module, name)
        return attacked.eval()
