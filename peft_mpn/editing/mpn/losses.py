"""Transformer-Patcher's losses: the edit loss, and the activation and memory losses of each patch."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .config import MPNEditorConfig
from .planning import PlannedPatch


def edit_loss(
    logits: torch.Tensor, targets: torch.Tensor, config: MPNEditorConfig, reduction: str = "mean"
) -> torch.Tensor:
    """Label-smoothed NLL of the targets (`-100` ignored), or NLL minus entropy for classifiers ([B] targets).

    `reduction="sum"` sums over target tokens (generation only), for callers that normalise themselves.
    """
    if targets.dim() == 1:
        if reduction != "mean":
            raise ValueError("The classifier edit loss is a batch mean; use reduction='mean'.")
        log_probs = logits.log_softmax(-1)
        entropy = -(log_probs.exp() * log_probs).sum(-1).mean()
        return F.cross_entropy(logits, targets) - config.entropy_weight * entropy
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        targets.reshape(-1),
        ignore_index=-100,
        label_smoothing=config.label_smoothing,
        reduction=reduction,
    )


def patch_losses(
    patches: Sequence[PlannedPatch],
    keys: torch.Tensor,
    bias: torch.Tensor,
    memory: torch.Tensor | None,
    config: MPNEditorConfig,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The activation and memory losses of each patch ([P] each), and the highest memory pre-activation.

    `keys`/`bias` are the patches' current tensors (row `p` belongs to `patches[p]`); `memory` holds the memory
    bank's vectors (None: the memory losses are zero and the peak is -inf).
    """
    activation_terms, anchor_means = [], []
    for p, patch in enumerate(patches):
        # every anchor of the patch (FFN inputs are fixed, so this costs no forward pass)
        pre = patch.anchors.to(keys.device) @ keys[p] + bias[p]
        k = min(config.activation_topk, len(pre))
        activation_terms.append(torch.exp(-pre).topk(k).values.mean())
        anchor_means.append(pre.mean())
    activation = torch.stack(activation_terms)
    if memory is None:
        return activation, torch.zeros(len(patches), device=keys.device), float("-inf")
    memory = memory.to(keys.device)
    # exp is increasing, so the k largest terms are those of the k highest pre-activations: one topk for all
    # patches, found without autograd; only those k inputs per patch enter the graph (the same loss and gradient
    # at a fraction of the cost on a large bank)
    k = min(config.memory_topk, len(memory))
    with torch.no_grad():
        highest = (memory @ keys.T + bias).topk(k, dim=0).indices  # [k, P]
    top = (memory[highest] * keys).sum(-1) + bias  # [k, P]
    relative = torch.exp((top - torch.stack(anchor_means) + config.memory_margin).clamp(max=60)).mean(0)
    absolute = torch.exp((top + config.memory_margin).clamp(max=60)).mean(0)
    return activation, relative + absolute, top[0].max().item()
